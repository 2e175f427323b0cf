// The fuzzers compile this file with GRPCMessageBounds.swift and InferenceError.swift alone (scripts/fuzz.sh,
// target grpc): no imports.

/// One gRPC call's request on its way in, frame by frame, before grpc-swift sees any of it (`GRPCStreamGate`
/// applies these decisions to the HTTP/2 stream). Every call of the service is unary, so the gate holds the call's
/// headers and its one message until the message is whole, then hands both on at once:
/// - headers a library could trap on are refused first (`grpc-timeout: -5S` ended the process in grpc-swift);
/// - the message's bytes are reserved in the server's budget from its length prefix, before any is buffered, so
///   stalled messages cannot grow the process past `--max-bytes-in-flight` (they are refused once it is spent);
/// - a message that does not arrive within the body timeout is DEADLINE_EXCEEDED;
/// - a `ModelInfer` message is counted (`GRPCMessageBounds`) before protobuf decodes it.
struct GRPCCallGate {
    /// gRPC status codes the gate answers with.
    enum Code: Int, Equatable {
        case invalidArgument = 3, deadlineExceeded = 4, resourceExhausted = 8
    }

    struct Refusal: Equatable {
        let code: Code
        let message: String
        /// The retry hint (`grpc-retry-pushback-ms`) of a refusal for lack of room.
        var retryAfterMilliseconds: Int?
    }

    enum Step: Equatable {
        /// Keep this frame's bytes: the message is not whole yet.
        case hold
        /// This frame completes the message: keep its bytes, check the message (`bounds`), then hand on the
        /// headers and the message (`endStream`: the client's last frame).
        case complete(endStream: Bool)
        /// Hand on the headers alone: the call has no message.
        case headersOnly
        /// Hand this frame on as it is (the call was handed on already).
        case passOn
        /// Answer with this status and close the stream; nothing reaches grpc-swift.
        case refuse(Refusal)
        /// Close the stream: a second message of a unary call, whose bytes nothing reserved.
        case reset
    }

    struct Limits: Equatable {
        /// A message's largest length (`--max-body-bytes`).
        var maxMessageBytes: Int
        /// Budget bytes reserved per message byte: the message as received, as grpc-swift frames it, as decoded,
        /// and its tensors as floats.
        var expansion = 4
        /// How long the message may take from the call's headers (`--body-timeout`), in seconds, for its message.
        var bodyTimeoutSeconds: Double
    }

    private enum State { case awaitingHeaders, receiving, handedOn, closed }

    let limits: Limits
    private var state = State.awaitingHeaders
    private var prefix: [UInt8] = []
    private var expected: Int?
    private var received = 0
    /// Budget bytes this call holds; the caller gives them back when the stream closes.
    private(set) var reserved = 0
    /// The message's length with its prefix, once the prefix came.
    var messageBytes: Int? { expected }
    /// The call's `:path`, once its headers came.
    private(set) var path = ""

    init(limits: Limits) { self.limits = limits }

    /// The call's headers: checked, then held until its message is whole (or handed on when it has none).
    mutating func headers(_ fields: [(name: String, value: String)], endStream: Bool) -> Step {
        switch state {
        case .awaitingHeaders: break
        case .handedOn: return .passOn
        case .receiving, .closed: return close(.reset)
        }
        for (name, value) in fields {
            switch name {
            case ":path": path = value
            case "grpc-timeout" where !Self.isTimeout(value):
                return refuse(.invalidArgument, "grpc-timeout \(quoted(value)) is not 1 to 8 digits and a unit "
                              + "(H, M, S, m, u or n)")
            default: continue
            }
        }
        if endStream {
            state = .handedOn
            return .headersOnly
        }
        state = .receiving
        return .hold
    }

    /// A DATA frame of `count` bytes, the first of which (up to 5) are `head`; `reserve` asks the server's budget.
    mutating func data(count: Int, head: some Collection<UInt8>, endStream: Bool,
                       reserve: (Int) -> Bool) -> Step {
        switch state {
        case .handedOn: return count == 0 ? .passOn : close(.reset)
        case .awaitingHeaders, .closed: return close(.reset)
        case .receiving: break
        }
        if expected == nil {
            prefix.append(contentsOf: head.prefix(5 - prefix.count))
            if prefix.count == 5, let refusal = admit(reserve: reserve) { return refusal }
        }
        received += count
        guard let expected else {
            return endStream ? refuse(.invalidArgument, "the call ended before its message's length prefix") : .hold
        }
        if received > expected {
            return refuse(.invalidArgument, "more than one message on a unary call")
        }
        if received == expected {
            state = .handedOn
            return .complete(endStream: endStream)
        }
        return endStream ? refuse(.invalidArgument, "the call ended after \(received - 5) of its message's "
                                  + "\(expected - 5) bytes") : .hold
    }

    /// The message's length from its prefix: within the limit and reserved in the budget, or the refusal.
    private mutating func admit(reserve: (Int) -> Bool) -> Step? {
        guard prefix[0] == 0 else {
            return refuse(.invalidArgument, "the message is compressed; this server accepts uncompressed messages")
        }
        let length = prefix[1...4].reduce(0) { $0 << 8 | Int($1) }
        guard length <= limits.maxMessageBytes else {
            return refuse(.resourceExhausted, "the message is \(length) bytes, larger than the limit of "
                          + "\(limits.maxMessageBytes) bytes")
        }
        let bytes = limits.expansion * (5 + length)
        guard reserve(bytes) else {
            var refusal = Refusal(code: .resourceExhausted, message: "the server is busy: it is already receiving "
                                  + "as many bytes of requests as it may hold")
            refusal.retryAfterMilliseconds = 1000
            return close(.refuse(refusal))
        }
        reserved = bytes
        expected = 5 + length
        return nil
    }

    /// The body timeout passed: a message still arriving is refused; a call handed on is grpc-swift's.
    mutating func deadlinePassed() -> Step? {
        guard state == .receiving || state == .awaitingHeaders else { return nil }
        let seconds = limits.bodyTimeoutSeconds
        return refuse(.deadlineExceeded, "the call's message did not arrive within \(seconds) s")
    }

    /// The budget bytes to give back (once).
    mutating func release() -> Int {
        defer { reserved = 0 }
        return reserved
    }

    /// The `ModelInfer` message failed its count.
    mutating func refuseMessage(_ excess: GRPCMessageBounds.Excess) -> Step {
        refuse(.invalidArgument, excess.description)
    }

    private mutating func refuse(_ code: Code, _ message: String) -> Step {
        close(.refuse(Refusal(code: code, message: message)))
    }

    private mutating func close(_ step: Step) -> Step {
        state = .closed
        return step
    }

    /// gRPC's Timeout: 1 to 8 ASCII digits and a unit.
    static func isTimeout(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        guard (2...9).contains(bytes.count), let unit = bytes.last, "HMSmun".utf8.contains(unit) else { return false }
        return bytes.dropLast().allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
    }
}
