// libFuzzer entry: a gRPC call as the server's gate receives it, HEADERS then DATA frames, and the message it
// counts before protobuf decodes it. Bytes: [fields][per field: name selector, value length, value][end flag] then
// frames of [length (2 bytes), end flag, bytes]; the whole input is also counted as a ModelInferRequest. Never a trap;
// the budget given back is the budget taken; a message is handed on whole and only within its limit; every refusal's
// message is one short line.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    _ = try? GRPCMessageBounds().check(UnsafeRawBufferPointer(input))
    var reader = Reader(bytes: input)
    let limits = GRPCCallGate.Limits(maxMessageBytes: 4096, bodyTimeoutSeconds: 1)
    var gate = GRPCCallGate(limits: limits)
    var (taken, received) = (0, 0)
    let budget = 20_000
    let names = [":path", "grpc-timeout", "content-type", "grpc-encoding", "te"]
    var fields: [(name: String, value: String)] = []
    for _ in 0..<Int(reader.byte() % 6) {
        let selector = Int(reader.byte())
        let value = String(decoding: reader.take(Int(reader.byte() % 16)), as: UTF8.self)
        fields.append((selector < 200 ? names[selector % names.count] : "x-\(selector)", value))
    }
    var step = gate.headers(fields, endStream: reader.byte() & 1 == 1)
    check(step)
    let open: [GRPCCallGate.Step] = [.hold, .passOn, .headersOnly, .complete(endStream: false)]
    while !reader.isEmpty, open.contains(step) {
        let length = Int(reader.byte()) << 4 | Int(reader.byte() & 0x0F)
        let endStream = reader.byte() & 1 == 1
        let frame = reader.take(length)
        step = gate.data(count: frame.count, head: frame.prefix(5), endStream: endStream) { bytes in
            guard bytes >= 0, taken + bytes <= budget else { return false }
            taken += bytes
            return true
        }
        check(step)
        received += frame.count
        if case .complete = step { precondition(gate.messageBytes == received, "handed on a partial message") }
    }
    if let late = gate.deadlinePassed() { check(late) }
    precondition(gate.reserved <= limits.expansion * (5 + limits.maxMessageBytes), "reserved past the limit")
    precondition(gate.release() == taken && gate.release() == 0, "the budget given back is not the budget taken")
    return 0
}

func check(_ step: GRPCCallGate.Step) {
    if case let .refuse(refusal) = step {
        precondition(!refusal.message.isEmpty && refusal.message.utf8.count < 1024 && !refusal.message.contains("\n"))
    }
}

struct Reader {
    let bytes: UnsafeBufferPointer<UInt8>
    var offset = 0

    var isEmpty: Bool { offset >= bytes.count }

    mutating func byte() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func take(_ count: Int) -> [UInt8] {
        let end = min(bytes.count, offset + count)
        defer { offset = end }
        return Array(bytes[offset..<end])
    }
}
