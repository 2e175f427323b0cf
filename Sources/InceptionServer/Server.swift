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
    public struct Configuration: Sendable {
        public var host = "127.0.0.1"
        /// 0 picks a free port (reported to `onServerRunning`).
        public var port = 8080
        public var limits = Batcher.Limits()
        /// Larger request bodies get 413 before they are read.
        public var maxBodyBytes = 16 << 20
        /// Request bytes held at once, all requests together; past it, 503 before the body is read.
        public var maxBytesInFlight = 128 << 20
        /// Threads per forward pass (one forward pass runs at a time per model).
        public var threads = Parallel.defaultThreads
        /// Images of more pixels are refused from their header (400), before their pixels are allocated.
        public var maxImagePixels = 25_000_000
        /// Decoding an image that takes longer is stopped (400).
        public var decodeTimeLimit: Duration = .seconds(5)
        /// Threads that decode and preprocess images (off the event loops, below the forward passes' priority).
        public var decodeThreads = 4
        public var timeouts = Timeouts()
        /// After SIGTERM, how long requests already received may take; then the remaining connections are closed.
        public var drainTimeout: Duration = .seconds(10)

        public init() {}
    }

    /// How long a connection may wait in each phase before it is closed (see `ConnectionDeadlines`).
    public struct Timeouts: Sendable {
        /// From the connection's start or its last response to the first byte of the next request.
        public var idle: Duration = .seconds(30)
        /// From a request's first byte to the end of its head.
        public var header: Duration = .seconds(10)
        /// From a request's head to the end of its body.
        public var body: Duration = .seconds(60)

        public init() {}
    }

    /// A model to serve: its name, and how to load it (from a file or the Hub; run once, off the event loops).
    public struct ModelSource: Sendable {
        public let name: ModelName
        public let load: @Sendable () throws -> InceptionModel

        public init(_ name: ModelName, load: @escaping @Sendable () throws -> InceptionModel) {
            (self.name, self.load) = (name, load)
        }

        public static func loaded(_ model: InceptionModel) -> ModelSource { ModelSource(model.name) { model } }
    }

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

    public init(models: [ModelSource], configuration: Configuration = Configuration()) {
        precondition(Set(models.map(\.name)).count == models.count, "a model is listed twice")
        (self.sources, self.configuration) = (models, configuration)
        states = Locked(Dictionary(uniqueKeysWithValues: models.map { ($0.name, ModelState.loading) }))
        budget = ByteBudget(limit: max(configuration.maxBytesInFlight, configuration.maxBodyBytes))
    }

    /// Serves until SIGTERM or SIGINT (or `shutdown` of a surrounding service group): the port opens at once,
    /// `/ready` answers 503 until every model is loaded; on the signal the server stops accepting connections,
    /// answers the requests it has, then returns. A model that cannot be loaded stops the server with its error.
    public func run(onServerRunning: @escaping @Sendable (_ port: Int) async -> Void = { _ in }) async throws {
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
        var groupConfiguration = ServiceGroupConfiguration(
            services: [loader, .init(service: app)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
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

    // MARK: Routes

    func router() -> Router<ServerContext> {
        let router = Router(context: ServerContext.self)
        let served = Set(sources.map(\.name))
        router.add(middleware: RequestMetrics(metrics: metrics) { served.contains($0) })
        router.get("/health") { _, _ in try Self.json(["status": "ok"]) }
        router.get("/ready") { _, _ in
            let loading = self.states.withLock {
                $0.filter { if case .loading = $0.value { true } else { false } }.keys
            }
            return try Self.json(["ready": loading.isEmpty, "loading": loading.map(\.rawValue).sorted()],
                                 status: loading.isEmpty ? .ok : .serviceUnavailable)
        }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: self.metrics.text())))
        }
        router.get("/v1/models") { _, _ in try Self.json(["models": self.sources.map { self.describe($0.name) }]) }
        router.post("/v1/models/:model/classify") { request, context in
            // Checked before any work; a model without logits is refused by `infer` below.
            let top = try Self.top(request, classes: try self.model(context).classes ?? 1)
            let (model, row) = try await self.infer(request, context, output: .logits)
            let logits = Tensor(shape: [1, row.count], scalars: row)
            return try Self.json(["model": model.name.rawValue,
                                  "predictions": model.predictions(logits: logits, top: top)[0].map {
                ["index": $0.index, "label": $0.label, "wordnet_id": $0.wordNetID ?? NSNull(),
                 "probability": Double($0.probability)] as [String: Any]
            }])
        }
        router.post("/v1/models/:model/embed") { request, context in
            let output = try self.model(context).embeddingOutput
            let (model, row) = try await self.infer(request, context, output: output)
            return try Self.json(["model": model.name.rawValue, "output": output.rawValue, "dimension": row.count,
                                  "embedding": row.map(Double.init)])
        }
        addOpenInferenceRoutes(to: router)
        return router
    }

    /// What a client needs to know about a model: input size, label space, preprocessing, outputs.
    func describe(_ name: ModelName) -> [String: Any] {
        let p = name.preprocessing
        let batcher: Batcher? = if case let .ready(batcher)? = states.withLock({ $0[name] }) { batcher } else { nil }
        let size = batcher?.model.inputSize ?? p.inputSize
        var entry: [String: Any] = [
            "name": name.rawValue, "input_size": size,
            "preprocessing": ["resize_short_side": p.resizeSize(inputSize: size),
                              "crop_fraction": p.cropFraction,
                              "interpolation": "\(p.interpolation)", "mean": p.mean.map(Double.init),
                              "std": p.std.map(Double.init)] as [String: Any],
        ]
        guard let model = batcher?.model else {
            entry["ready"] = false
            return entry
        }
        entry["ready"] = true
        entry["outputs"] = model.outputNames.map(\.rawValue)
        entry["classes"] = model.classes ?? NSNull()
        entry["labels"] = switch model.classes {
        case nil: "none"
        case _ where model.classNames != nil: "the checkpoint's class names"
        case 1000: "imagenet-1k"
        case 1001: "imagenet-1k with background at 0"
        default: "class index"
        }
        if let names = model.classNames { entry["class_names"] = names }
        return entry
    }

    func model(_ context: ServerContext) throws -> InceptionModel { try batcher(context).model }

    func batcher(_ context: ServerContext) throws -> Batcher {
        let requested = context.parameters.get("model") ?? ""
        guard let name = ModelName(rawValue: requested), let state = states.withLock({ $0[name] }) else {
            throw APIError(.notFound,
                           """
                               unknown model '\(requested)'; this server has \
                               \(sources.map(\.name.rawValue).joined(separator: ", "))
                               """)
        }
        guard case let .ready(batcher) = state else {
            throw APIError(.serviceUnavailable, "model \(name) is still loading", retryAfter: 1)
        }
        return batcher
    }

    /// Reads the image of a request, preprocesses it for the model, and runs it in the next batch. Admission comes
    /// first — a place in the model's queue and the request's bytes within the server's budget — so that an
    /// overloaded server answers 503 before it reads a body. Decoding runs on the decode pool with a time limit.
    func infer(_ request: Request, _ context: ServerContext, output: OutputName) async throws
        -> (InceptionModel, [Float])
    {
        let batcher = try batcher(context)
        let model = batcher.model
        metrics.inProgress(model: model.name.rawValue, by: 1)
        defer { metrics.inProgress(model: model.name.rawValue, by: -1) }
        guard model.graph.outputs[output] != nil else {
            let problem = InputError.unknownOutput(output, model: model.name.rawValue, available: model.outputNames)
            throw APIError(.badRequest, problem.description)
        }
        do {
            try batcher.admit()
        } catch {
            throw refusal(error, model: model)
        }
        var admitted = true
        defer { if admitted { batcher.withdraw() } }
        let bytes = try reserveBody(request)
        defer { budget.release(bytes) }
        let pixels = try await decode(try await imageBytes(request, context), for: model)
        let channel = context.channel
        admitted = false
        let row: [Float]
        do {
            row = try await batcher.run(pixels: pixels, output: output, announced: true) { !channel.isActive }
        } catch let error as Batcher.Refusal {
            throw refusal(error, model: model)
        }
        // The weights' fault, not the request's: 500 with the CLI's line.
        guard row.allSatisfy(\.isFinite) else {
            throw APIError(.internalServerError, OutputError.nonFinite(output: output).description)
        }
        return (model, row)
    }

    /// The bytes a request may bring (its Content-Length, or the body limit), reserved in the server's budget.
    /// `json`: how many of those bytes are JSON that the request's parser turns into objects (an Open Inference
    /// request without binary data); each is reserved `jsonExpansion` times, and a request that could never fit
    /// the budget is refused with 413.
    func reserveBody(_ request: Request, json: ((Int) -> Int)? = nil) throws -> Int {
        let limit = configuration.maxBodyBytes
        let announced = request.headers[.contentLength].flatMap(Int.init)
        if let announced, announced > limit {
            throw APIError(.contentTooLarge, "the request body is larger than the limit of \(limit) bytes")
        }
        var bytes = announced ?? limit
        if let json {
            bytes += (Self.jsonExpansion - 1) * min(bytes, max(0, json(bytes)))
            guard bytes <= budget.limit else {
                throw APIError(.contentTooLarge, "a JSON request of this size would take more than the server's "
                               + "\(budget.limit) bytes of requests in flight once parsed; "
                               + "send the tensor as binary data")
            }
        }
        guard budget.reserve(bytes) else {
            let message = "the server is busy: it is already receiving \(budget.limit) bytes of requests"
            throw APIError(.serviceUnavailable, message, retryAfter: 1)
        }
        return bytes
    }

    /// Peak memory per byte of JSON while Foundation's parser holds it as objects: 16 MB of "1,1,…" (the worst case,
    /// two bytes a number) raised the server's peak by 386–440 MB (Zen 4, 2026-12-01); realistic floats cost less.
    static let jsonExpansion = 28

    /// The image's normalised pixels, decoded and preprocessed on the decode pool within the time limit.
    func decode(_ body: Data, for model: InceptionModel) async throws -> [Float] {
        guard let pool = decoders.withLock({ $0 }) else {
            throw APIError(.serviceUnavailable, "the server is not running")
        }
        let (pixels, limit) = (configuration.maxImagePixels, configuration.decodeTimeLimit)
        do {
            return try await pool.run {
                model.name.preprocessing.apply(try RGBImage(decoding: body, maximumPixels: pixels, timeLimit: limit),
                                               inputSize: model.inputSize)
            }
        } catch let error as ImageError {
            throw APIError(.badRequest, error.description)
        } catch let error as Batcher.Refusal {
            throw APIError(.serviceUnavailable, error.description, retryAfter: 1)
        }
    }

    /// A batcher's refusal as the HTTP answer: 503 (counted) when overloaded or stopping; 499 when the client left.
    func refusal(_ refusal: Batcher.Refusal, model: InceptionModel) -> APIError {
        switch refusal {
        case let .overloaded(_, retryAfter):
            metrics.refused(model: model.name.rawValue)
            return APIError(.serviceUnavailable, refusal.description, retryAfter: retryAfter)
        case .shuttingDown:
            return APIError(.serviceUnavailable, refusal.description, retryAfter: 1)
        case .clientGone:
            return APIError(.clientClosedRequest, refusal.description)
        }
    }

    /// The body, or its `image`/`file` part when it is multipart/form-data; at most `maxBodyBytes`. A client that
    /// disconnects while sending is answered 499 (nobody reads it; the metrics count it).
    func imageBytes(_ request: Request, _ context: ServerContext) async throws -> Data {
        let body = try await collectBody(request)
        do {
            let contentType = request.headers[.contentType] ?? ""
            guard let boundary = try Multipart.boundary(contentType: contentType) else { return body }
            guard let part = Multipart.upload(in: try Multipart.parts(of: body, boundary: boundary)) else {
                throw APIError(.badRequest, "the multipart body has no part named 'image' or 'file' and no file part")
            }
            return part.body
        } catch let error as Multipart.Error {
            throw APIError(.badRequest, error.description)
        }
    }

    /// The whole body, at most `maxBodyBytes` (413 beyond); 499 when the client disconnects while sending it.
    func collectBody(_ request: Request) async throws -> Data {
        let limit = configuration.maxBodyBytes
        do {
            return Data(try await request.body.collect(upTo: limit).readableBytesView)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "the request body is larger than the limit of \(limit) bytes")
        } catch {
            throw APIError(.clientClosedRequest, "the connection closed before the request body was complete")
        }
    }

    /// `?top=k`: at least 1; more than the model's classes gives them all (as the command line's `--top`).
    static func top(_ request: Request, classes: Int) throws -> Int {
        guard let value = request.uri.queryParameters["top"] else { return min(5, classes) }
        guard let top = Int(String(value)), top >= 1 else {
            throw APIError(.badRequest, "top must be a whole number of at least 1, not '\(value)'")
        }
        return min(top, classes)
    }

    static func json(_ object: Any, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) throws -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        let data = try JSON.data(object)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

extension HTTPResponse.Status {
    /// nginx's status for a request whose client closed the connection before the answer (counted, never read).
    static let clientClosedRequest = HTTPResponse.Status(code: 499, reasonPhrase: "Client Closed Request")
}

/// The request context: Hummingbird's, plus the connection, whose state tells whether the client is still there.
struct ServerContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// An error answered as `{"error": message}` with its status (and `Retry-After` for 503).
struct APIError: HTTPResponseError {
    let status: HTTPResponse.Status
    let message: String
    let retryAfter: Int?

    init(_ status: HTTPResponse.Status, _ message: String, retryAfter: Int? = nil) {
        (self.status, self.message, self.retryAfter) = (status, message, retryAfter)
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers: HTTPFields = [:]
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        return try InferenceServer.json(["error": message], status: status, headers: headers)
    }
}

/// Counts every request by endpoint and status and times it. An error that is not an HTTP error is a bug of
/// ours: 500 with its one-line description.
struct RequestMetrics: RouterMiddleware {
    typealias Context = ServerContext
    let metrics: ServerMetrics
    let servable: @Sendable (ModelName) -> Bool

    func handle(_ request: Request, context: Context,
                next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        let response: Response
        do {
            response = try await next(request, context)
        } catch let error as HTTPError {
            // Hummingbird's own (an unknown path, say): JSON like ours.
            response = try APIError(error.status, error.body
                                    ?? "no such endpoint: \(request.method) \(request.uri.path)")
                .response(from: request, context: context)
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: context)
        } catch {
            response = try APIError(.internalServerError, "\(error)").response(from: request, context: context)
        }
        // The model label only for models this server has, so that clients cannot grow the label set.
        let model = context.parameters.get("model").flatMap { ModelName(rawValue: $0) }
            .map { servable($0) ? $0.rawValue : "" } ?? ""
        metrics.request(endpoint: context.endpointPath ?? "unmatched", model: model, method: request.method.rawValue,
                        status: response.status.code, duration: .now - started)
        return response
    }
}
