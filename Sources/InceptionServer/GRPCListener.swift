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
        let transport = HTTP2ServerTransport.Custom(
            listenerFactory: PlaintextListener(host: configuration.host, port: port),
            config: .defaults.with {
                // Messages as large as HTTP bodies; a connection's calls bounded; idle connections closed as HTTP's.
                $0.rpc.maxRequestPayloadSize = configuration.maxBodyBytes
                $0.http2.maxConcurrentStreams = configuration.grpcStreamsPerConnection
                $0.connection.maxIdleTime = configuration.timeouts.idle
            })
        let grpc = GRPCServer(transport: transport, services: [GRPCInference(server: server)],
                              interceptors: [MessageDeadline(limit: configuration.timeouts.body)])
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
        } onGracefulShutdown: {
            grpc.beginGracefulShutdown()
        }
    }
}

/// A call's message must arrive within `limit` of the call's start, as an HTTP body must within the body timeout: a
/// client that opens a call and stalls is answered DEADLINE_EXCEEDED, naming the limit, and its stream is closed.
struct MessageDeadline: ServerInterceptor {
    let limit: Duration

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: GRPCCore.ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, GRPCCore.ServerContext) async throws
            -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let (messages, continuation) = AsyncThrowingStream<Input, any Error>.makeStream()
        let limit = self.limit
        return try await withThrowingTaskGroup(of: Void.self) { group in
            // The call's messages, passed on as they come; after the last, a late deadline changes nothing.
            group.addTask {
                do {
                    for try await message in request.messages { continuation.yield(message) }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            group.addTask {
                guard (try? await Task.sleep(for: limit)) != nil else { return }
                let seconds = Double(limit.components.seconds) + Double(limit.components.attoseconds) * 1e-18
                continuation.finish(throwing: RPCError(
                    code: .deadlineExceeded, message: "the call's message did not arrive within \(seconds) s"))
            }
            defer { group.cancelAll() }
            return try await next(StreamingServerRequest(metadata: request.metadata,
                                                         messages: RPCAsyncSequence(wrapping: messages)), context)
        }
    }
}

/// A plaintext TCP listener for gRPC's HTTP/2 transport, bound with NIO's `ServerBootstrap`. (The transport's own
/// Posix listener brings TLS, and with it the build of BoringSSL and swift-certificates; the server serves
/// plaintext, as its HTTP side does — TLS belongs to the proxy in front.)
struct PlaintextListener: HTTP2ServerTransport.ListenerFactory {
    let host: String
    let port: Int

    var eventLoopGroup: any EventLoopGroup { MultiThreadedEventLoopGroup.singleton }

    func makeListeningChannel(
        listenerConfigurator: HTTP2ServerTransport.ListenerConfigurator,
        connectionConfigurator: HTTP2ServerTransport.ConnectionConfigurator
    ) async throws -> NIOAsyncChannel<HTTP2ServerTransport.ConnectionConfigurator.ConnectionChannel, Never> {
        try await ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { listenerConfigurator.configure(channel: $0) }
            .bind(host: host, port: port) { connectionConfigurator.configure(channel: $0, tls: .none) }
    }
}

extension HTTP2ServerTransport.Custom<PlaintextListener>.Config {
    func with(_ change: (inout Self) -> Void) -> Self {
        var copy = self
        change(&copy)
        return copy
    }
}
