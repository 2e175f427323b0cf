import CInceptionSystem
import Foundation
import Hummingbird
import Inception
import InceptionEngine
import InceptionIO
import Logging
import NIOCore
import ServiceLifecycle

/// `inception serve`: models behind HTTP with dynamic batching.
///
/// Endpoints: `POST /v1/models/{model}/classify` and `/embed` (image bytes, or multipart/form-data with an
/// `image` or `file` part), `GET /v1/models`, `GET /health` (the process answers), `GET /ready` (every model
/// loaded), `GET /metrics` (Prometheus text). Errors are JSON `{"error": "…"}` with the same one-line message
/// the CLI prints.
public final class InferenceServer: Sendable {
    enum ModelState {
        case loading
        case ready(Batcher)
    }

    public let configuration: Configuration
    public let metrics = ServerMetrics()
    let sources: [ModelSource]
    let states: Locked<[ModelName: ModelState]>
    let serviceGroup = Locked<ServiceGroup?>(nil)
    let budget: ByteBudget
    /// Made when the server starts, closed when it stops.
    let decoders = Locked<DecodePool?>(nil)
    /// Face searches of `/v1/faces/detect` under way.
    let searches = Locked(0)
    /// Set shortly before the drain deadline: requests still waiting for a batch are answered "shutting down"
    /// (gRPC's UNAVAILABLE) instead of being cut off with their connection.
    let drainExpired = Locked(false)

    public init(models: [ModelSource], configuration: Configuration = Configuration()) {
        precondition(Set(models.map(\.name)).count == models.count, "a model is listed twice")
        (self.sources, self.configuration) = (models, configuration)
        states = Locked(Dictionary(uniqueKeysWithValues: models.map { ($0.name, ModelState.loading) }))
        // By default, room for the largest request each model admits, a batch of JSON numbers once parsed included;
        // a limit given is kept (a JSON request that could never fit it is 413, naming binary data).
        let json = models.map {
            Self.jsonExpansion * Self.jsonBodyLimit(configuration, inputSize: $0.name.spec.inputSize)
        }
        let inFlight = configuration.maxBytesInFlight ?? ([128 << 20] + json).max()!
        budget = ByteBudget(limit: max(inFlight, configuration.maxBodyBytes))
    }

    /// Serves until SIGTERM or SIGINT (or `shutdown` of a surrounding service group): the port opens at once,
    /// `/ready` answers 503 until every model is loaded; on the signal the server stops accepting connections,
    /// answers the requests it has, then returns. A model that cannot be loaded stops the server with its error.
    /// With `grpcPort`, the gRPC service listens too (`onGRPCRunning` is given its port) and stops with the rest.
    public func run(onServerRunning: @escaping @Sendable (_ port: Int) async -> Void = { _ in },
                    onGRPCRunning: @escaping @Sendable (_ port: Int) async -> Void = { _ in }) async throws {
        var logger = Logger(label: "inception.serve")
        logger.logLevel = .notice
        Self.raiseFileLimit()
        // Request bodies and decoded images (megabytes each) get pages of their own, returned to the system when
        // freed, instead of staying in the heap after a burst.
        _ = inception_map_allocations_from(1 << 20)
        let timeouts = configuration.timeouts
        let app = Application(
            router: router(),
            server: .http1(configuration: .init(additionalChannelHandlers: [ConnectionDeadlines(timeouts)])),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port),
                                 serverName: "inception"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: logger)
        // A loader that fails shuts the HTTP server down gracefully, then `run` throws the loader's error.
        let loader = ServiceGroupConfiguration.ServiceConfiguration(
            service: ModelLoader(server: self), successTerminationBehavior: .gracefullyShutdownGroup,
            failureTerminationBehavior: .gracefullyShutdownGroup)
        var services = [loader, .init(service: app)]
        if let port = configuration.grpcPort {
            // A gRPC port that cannot be bound stops the server as a loader's failure does, gracefully.
            services.append(.init(service: GRPCListener(server: self, port: port, onRunning: onGRPCRunning),
                                  failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        var groupConfiguration = ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // Past the drain deadline the services are cancelled: the HTTP server closes its remaining connections.
        groupConfiguration.maximumGracefulShutdownDuration = configuration.drainTimeout
        let group = ServiceGroup(configuration: groupConfiguration)
        serviceGroup.withLock { $0 = group }
        decoders.withLock { $0 = DecodePool(threads: configuration.decodeThreads) }
        defer {
            closeBatchers()
            decoders.withLock { $0?.close() }
        }
        do {
            try await group.run()
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw PortInUse(host: configuration.host, port: configuration.port)
        } catch let error as GRPCListener.PortInUse {
            throw PortInUse(host: configuration.host, port: error.port)
        }
    }

    /// The address the server was to listen on is taken (NIO's own text names only the system call).
    public struct PortInUse: Error, CustomStringConvertible {
        public let host: String, port: Int
        public var description: String { "port \(port) on \(host) is already in use" }
    }

    /// Each connection is a file descriptor: the soft limit (often 1024) is raised to the hard one, so that idle
    /// connections run into the idle timeout rather than starve the server of descriptors.
    static func raiseFileLimit() {
        #if canImport(Glibc)
        let fileLimit = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
        let fileLimit = RLIMIT_NOFILE
        #endif
        var limit = rlimit()
        guard getrlimit(fileLimit, &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(fileLimit, &limit)
    }

    /// What SIGTERM does: stop accepting connections, answer the requests already received, make `run` return.
    public func shutdown() async {
        await serviceGroup.withLock { $0 }?.triggerGracefulShutdown()
    }

    /// Loads every model in order (each on a thread of its own), then waits for shutdown.
    struct ModelLoader: Service {
        let server: InferenceServer

        func run() async throws {
            for source in server.sources {
                // A shutdown during loading waits for the model being loaded (it cannot be interrupted), not the rest.
                if Task.isShuttingDownGracefully { return }
                let model = try await Self.offEventLoops(source.load)
                let limits = server.configuration.limits
                let batcher = Batcher(model: model, limits: limits, threads: server.configuration.threads,
                                      observer: server.metrics.observer(model: source.name.rawValue,
                                                                        maxBatch: limits.maxBatch))
                server.states.withLock { $0[source.name] = .ready(batcher) }
                server.metrics.queueDepth(model: source.name.rawValue, waiting: 0)
            }
            try? await gracefulShutdown()
        }

        static func offEventLoops<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
            try await withCheckedThrowingContinuation { continuation in
                Thread { continuation.resume(with: Result { try body() }) }.start()
            }
        }
    }

    private func closeBatchers() {
        let batchers = states.withLock { states in
            states.values.compactMap { if case let .ready(b) = $0 { return b } else { return nil } }
        }
        for batcher in batchers { batcher.close() }
    }
}
