import GRPCCore
import GRPCNIOTransportCore
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The gRPC service (`GRPCInference`) on its own port, plaintext HTTP/2, as a service of the server's group: it stops
/// accepting calls on SIGTERM and finishes those it has, within the server's drain deadline.
struct GRPCListener: Service {
    let server: InferenceServer
    let port: Int
    let onRunning: @Sendable (_ port: Int) async -> Void

    struct PortInUse: Error { let port: Int }

    func run() async throws {
        let configuration = server.configuration
        let streams = configuration.grpcStreamsPerConnection
        let transport = HTTP2ServerTransport.Custom(
            listenerFactory: PlaintextListener(host: configuration.host, port: port, streamsPerConnection: streams),
            config: .defaults.with {
                // Messages as large as HTTP bodies (the gate refuses larger ones first); HTTP/2 itself allows more
                // streams than are advertised, so that the gate refuses a stream past the limit alone; idle
                // connections closed as HTTP's.
                $0.rpc.maxRequestPayloadSize = configuration.maxBodyBytes
                $0.http2.maxConcurrentStreams = GRPCConnectionGuard.hardLimit(streams)
                $0.connection.maxIdleTime = configuration.timeouts.idle
                $0.channelDebuggingCallbacks.onAcceptHTTP2Stream = gate
            })
        let grpc = GRPCServer(transport: transport, services: [GRPCInference(server: server)])
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask {
                    do {
                        try await grpc.serve()
                    } catch {
                        // NIO's bind error, wrapped by gRPC: named like HTTP's.
                        if String(reflecting: error).contains("Address already in use") { throw PortInUse(port: port) }
                        throw error
                    }
                }
                // Nil when the listener could not bind (serve throws).
                if let bound = await transport.listeningAddress?.ipv4?.port { await onRunning(bound) }
            }
        } onGracefulShutdown: { [server] in
            grpc.beginGracefulShutdown()
            // The calls are drained (`GRPCStreamGate` keeps grpc-swift from cancelling them); those still waiting
            // for a batch near the deadline are answered UNAVAILABLE while their connections are open.
            let drain = server.configuration.drainTimeout
            Task {
                try? await Task.sleep(for: drain - min(.seconds(1), drain / 2))
                server.drainExpired.withLock { $0 = true }
            }
        }
    }

    /// Puts a `GRPCStreamGate` in front of grpc-swift on a new stream.
    var gate: @Sendable (any Channel) -> EventLoopFuture<Void> {
        let (server, configuration) = (server, server.configuration)
        let limits = GRPCCallGate.Limits(maxMessageBytes: configuration.maxBodyBytes,
                                         bodyTimeoutSeconds: configuration.timeouts.body.inSeconds)
        let bounds = server.messageBounds
        return { stream in
            stream.eventLoop.makeCompletedFuture {
                let connection = try? stream.parent?.pipeline.syncOperations.handler(type: GRPCConnectionGuard.self)
                let gate = GRPCStreamGate(limits: limits, budget: server.budget, bounds: bounds,
                                          connection: connection)
                try stream.pipeline.syncOperations.addHandler(gate, position: .first)
            }
        }
    }
}

/// A plaintext TCP listener for gRPC's HTTP/2 transport, bound with NIO's `ServerBootstrap`. (The transport's own
/// Posix listener brings TLS, and with it the build of BoringSSL and swift-certificates; the server serves
/// plaintext, as its HTTP side does — TLS belongs to the proxy in front.)
struct PlaintextListener: HTTP2ServerTransport.ListenerFactory {
    let host: String
    let port: Int
    let streamsPerConnection: Int

    var eventLoopGroup: any EventLoopGroup { MultiThreadedEventLoopGroup.singleton }

    func makeListeningChannel(
        listenerConfigurator: HTTP2ServerTransport.ListenerConfigurator,
        connectionConfigurator: HTTP2ServerTransport.ConnectionConfigurator
    ) async throws -> NIOAsyncChannel<HTTP2ServerTransport.ConnectionConfigurator.ConnectionChannel, Never> {
        try await ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { listenerConfigurator.configure(channel: $0) }
            .bind(host: host, port: port) { [streamsPerConnection] channel in
                do {
                    // Ahead of HTTP/2, so that it sees the server's first SETTINGS frame.
                    try channel.pipeline.syncOperations.addHandler(GRPCConnectionGuard(limit: streamsPerConnection))
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
                return connectionConfigurator.configure(channel: channel, tls: .none)
            }
    }
}

extension HTTP2ServerTransport.Custom<PlaintextListener>.Config {
    func with(_ change: (inout Self) -> Void) -> Self {
        var copy = self
        change(&copy)
        return copy
    }
}

extension InferenceServer {
    /// What a `ModelInfer` message may count (`GRPCMessageBounds`): a request of at most
    /// `OpenInference.maximumBatch` images.
    var messageBounds: GRPCMessageBounds { GRPCMessageBounds(elements: OpenInference.maximumBatch) }
}

extension Duration {
    var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
