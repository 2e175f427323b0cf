import NIOCore
import NIOHPACK
import NIOHTTP2

/// The first handler of each gRPC stream (HTTP/2 stream channel), ahead of grpc-swift's: applies `GRPCCallGate`.
/// The call's headers and message reach grpc-swift only once the message is whole, reserved in the server's byte
/// budget and counted; a refusal is answered here as a trailers-only response and the stream is closed. The bytes
/// stay reserved until the stream closes (the call's answer written). The server's graceful shutdown is not passed
/// on: grpc-swift cancels every call it has on it, where the server drains them (`--drain-timeout`).
final class GRPCStreamGate: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    static let modelInferPath = "/inference.GRPCInferenceService/ModelInfer"

    private var gate: GRPCCallGate
    private let budget: ByteBudget
    private let bounds: GRPCMessageBounds
    private let connection: GRPCConnectionGuard?
    private var counted = false
    private var held: HTTP2Frame.FramePayload.Headers?
    private var message: ByteBuffer?
    private var deadline: Scheduled<Void>?

    init(limits: GRPCCallGate.Limits, budget: ByteBudget, bounds: GRPCMessageBounds,
         connection: GRPCConnectionGuard?) {
        (gate, self.budget, self.bounds, self.connection) = (GRPCCallGate(limits: limits), budget, bounds, connection)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .headers(headers):
            if !counted, held == nil, let connection {
                // A stream past the connection's limit is refused alone (RFC 9113 §5.1.2), before any of it is read.
                guard connection.open < connection.limit else { return refuseStream(context) }
                connection.open += 1
                counted = true
            }
            let step = gate.headers(headers.headers.map { ($0.name, $0.value) }, endStream: headers.endStream)
            if step == .hold {
                held = headers
                let seconds = gate.limits.bodyTimeoutSeconds
                deadline = context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(Int64(seconds * 1e9))) {
                    [self] in
                    if let step = gate.deadlinePassed() { apply(step, context: context) }
                }
            } else if step == .headersOnly {
                context.fireChannelRead(wrapInboundOut(.headers(headers)))
            } else {
                apply(step, context: context, frame: data)
            }
        case let .data(frame):
            guard case var .byteBuffer(bytes) = frame.data else { return apply(.reset, context: context) }
            let step = gate.data(count: bytes.readableBytes, head: bytes.readableBytesView.prefix(5),
                                 endStream: frame.endStream, reserve: budget.reserve)
            switch step {
            case .hold, .complete:
                if message == nil { message = context.channel.allocator.buffer(capacity: gate.messageBytes ?? 0) }
                message!.writeBuffer(&bytes)
                if case let .complete(endStream) = step { handOn(context, endStream: endStream) }
            default: apply(step, context: context, frame: data)
            }
        default:
            context.fireChannelRead(data)
        }
    }

    /// The whole message: counted when it is a `ModelInfer` request, then the headers and the message handed on.
    private func handOn(_ context: ChannelHandlerContext, endStream: Bool) {
        deadline?.cancel()
        guard let headers = held.take(), let message = message.take() else { return apply(.reset, context: context) }
        if gate.path == Self.modelInferPath {
            let counted = message.withUnsafeReadableBytes { raw in
                Result { () throws(GRPCMessageBounds.Excess) in try bounds.check(.init(rebasing: raw.dropFirst(5))) }
            }
            if case let .failure(excess) = counted { return apply(gate.refuseMessage(excess), context: context) }
        }
        context.fireChannelRead(wrapInboundOut(.headers(headers)))
        let data = HTTP2Frame.FramePayload.Data(data: .byteBuffer(message), endStream: endStream)
        context.fireChannelRead(wrapInboundOut(.data(data)))
    }

    private func apply(_ step: GRPCCallGate.Step, context: ChannelHandlerContext, frame: NIOAny? = nil) {
        switch step {
        case .hold, .complete, .headersOnly: break
        case .passOn: if let frame { context.fireChannelRead(frame) }
        case let .refuse(refusal): answer(refusal, context: context)
        case .reset:
            discard()
            context.close(promise: nil)
        }
    }

    /// A trailers-only answer (HTTP 200, the gRPC status and its message), then the stream closed.
    private func answer(_ refusal: GRPCCallGate.Refusal, context: ChannelHandlerContext) {
        discard()
        var trailers: HPACKHeaders = [":status": "200", "content-type": "application/grpc",
                                      "grpc-status": "\(refusal.code.rawValue)",
                                      "grpc-message": Self.percentEncoded(refusal.message)]
        if let milliseconds = refusal.retryAfterMilliseconds {
            trailers.add(name: "grpc-retry-pushback-ms", value: "\(milliseconds)")
        }
        // Then RST_STREAM NO_ERROR, which tells a client still sending to stop and keep the status (gRPC over
        // HTTP/2); closing the stream channel alone would reset it with CANCEL, which clients report instead.
        context.write(wrapOutboundOut(.headers(.init(headers: trailers, endStream: true))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.rstStream(.noError)))
            .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    private func refuseStream(_ context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(.rstStream(.refusedStream)), promise: nil)
        context.close(promise: nil)
    }

    /// What was held for a call that will not be handed on.
    private func discard() {
        deadline?.cancel()
        (held, message) = (nil, nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // grpc-swift cancels its calls on this event; the server's drain lets them finish instead.
        if event is ChannelShouldQuiesceEvent { return }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        discard()
        let bytes = gate.release()
        if bytes > 0 { budget.release(bytes) }
        if counted {
            connection?.open -= 1
            counted = false
        }
        context.fireChannelInactive()
    }

    /// grpc-message's encoding: printable ASCII but '%' as it is, every other byte as %XX.
    static func percentEncoded(_ text: String) -> String {
        var encoded = ""
        for byte in text.utf8 {
            if (0x20...0x7E).contains(byte) && byte != UInt8(ascii: "%") {
                encoded.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                encoded += (byte < 0x10 ? "%0" : "%") + String(byte, radix: 16, uppercase: true)
            }
        }
        return encoded
    }
}

/// The first handler of each gRPC connection, ahead of HTTP/2: counts the connection's open calls for
/// `GRPCStreamGate`, and advertises the call limit in the server's first SETTINGS frame while HTTP/2 itself is
/// given a higher one. (SwiftNIO's HTTP/2 ends the whole connection with PROTOCOL_ERROR when a client opens a
/// stream past the limit it enforces; RFC 9113 §5.1.2 allows refusing that stream alone, which the gate does.)
final class GRPCConnectionGuard: ChannelOutboundHandler {
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    /// The calls a connection may have open at once, as advertised.
    let limit: Int
    /// Open calls (event loop only).
    var open = 0
    private var advertised = false

    init(limit: Int) { self.limit = limit }

    /// What HTTP/2 enforces: past it, the connection ends.
    static func hardLimit(_ limit: Int) -> Int { 4 * limit }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard !advertised, case var .byteBuffer(bytes) = unwrapOutboundIn(data) else {
            return context.write(data, promise: promise)
        }
        advertised = true
        Self.advertise(limit, in: &bytes)
        context.write(wrapOutboundOut(.byteBuffer(bytes)), promise: promise)
    }

    /// Sets SETTINGS_MAX_CONCURRENT_STREAMS to `limit` in the SETTINGS frame that starts `bytes` (the server's
    /// connection preface), if it does.
    static func advertise(_ limit: Int, in bytes: inout ByteBuffer) {
        let start = bytes.readerIndex
        guard let length = bytes.getInteger(at: start, as: UInt32.self).map({ Int($0 >> 8) }),
              bytes.getInteger(at: start + 3, as: UInt8.self) == 0x4,
              bytes.getInteger(at: start + 5, as: UInt32.self) == 0, bytes.readableBytes >= 9 + length else { return }
        for entry in stride(from: start + 9, to: start + 9 + length - 5, by: 6)
            where bytes.getInteger(at: entry, as: UInt16.self) == 0x3 {
            bytes.setInteger(UInt32(limit), at: entry + 2)
        }
    }
}
