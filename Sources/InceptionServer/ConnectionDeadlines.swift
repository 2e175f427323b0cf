import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Bounds how long a connection may hold the server without sending a request: each phase of an HTTP/1.1
/// connection has its own deadline, and a connection past it is closed.
/// - idle: from the connection's start, or the last response, to the first byte of the next request;
/// - header: from that first byte to the end of the request's head (slowloris);
/// - body: from the head to the end of the body (a client that stalls mid-upload).
/// While the server works on a request no deadline runs. When the server answers before the body has arrived (a 503
/// or 413 that refuses it unread), the connection is closed a second later instead of waiting for the whole body.
/// A client that closes its side of the connection while its request waits has gone: the connection is closed, and
/// the request is dropped if its forward pass has not started.
final class ConnectionDeadlines: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    enum Phase { case idle, head, body, handling, answeredEarly }

    /// How long a connection whose request was answered before its body arrived stays open for the answer to leave.
    static let linger: Duration = .seconds(1)

    let timeouts: InferenceServer.Timeouts
    private var phase = Phase.idle
    private var timer: Scheduled<Void>?

    init(_ timeouts: InferenceServer.Timeouts) { self.timeouts = timeouts }

    func handlerAdded(context: ChannelHandlerContext) {
        // The first bytes of a request are seen before the HTTP decoder, which reports only whole heads.
        try? context.pipeline.syncOperations.addHandler(FirstByte(owner: self, context: context), position: .first)
        if context.channel.isActive { enter(.idle, context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) { cancelTimer() }

    func channelActive(context: ChannelHandlerContext) {
        enter(.idle, context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimer()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: enter(.body, context)
        case .body: break
        case .end:
            if phase == .body { enter(.handling, context) } else if phase == .answeredEarly { enter(.idle, context) }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            if phase == .handling { enter(.idle, context) } else if phase == .body { enter(.answeredEarly, context) }
        }
        context.write(data, promise: promise)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            context.close(promise: nil)  // the client has gone; nobody will read an answer
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Bytes arrived: a new request has started if the connection was idle.
    fileprivate func bytesArrived(_ context: ChannelHandlerContext) {
        if phase == .idle { enter(.head, context) }
    }

    private func enter(_ next: Phase, _ context: ChannelHandlerContext) {
        phase = next
        cancelTimer()
        let limit: Duration? = switch next {
        case .idle: timeouts.idle
        case .head: timeouts.header
        case .body: timeouts.body
        case .answeredEarly: Self.linger
        case .handling: nil
        }
        guard let limit else { return }
        timer = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: TimeAmount(limit)) { [self] in
            timer = nil
            context.close(promise: nil)
        }
    }

    private func cancelTimer() {
        timer?.cancel()
        timer = nil
    }

    /// Sees raw bytes at the front of the pipeline and tells its owner; passes everything on.
    final class FirstByte: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer
        private let owner: ConnectionDeadlines
        private let ownerContext: ChannelHandlerContext

        init(owner: ConnectionDeadlines, context: ChannelHandlerContext) {
            (self.owner, self.ownerContext) = (owner, context)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            owner.bytesArrived(ownerContext)
            context.fireChannelRead(data)
        }
    }
}

@available(*, unavailable)
extension ConnectionDeadlines: Sendable {}
