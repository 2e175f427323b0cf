import Foundation
import Hummingbird
import Inception
import InceptionEngine
import NIOCore

/// The `/v1`, health, readiness and metrics endpoints (the Open Inference Protocol's are in OpenInferenceRoutes),
/// and how a request names its model.
extension InferenceServer {
    func router() -> Router<ServerContext> {
        let router = Router(context: ServerContext.self)
        let served = Set(sources.map(\.name))
        router.add(middleware: RequestMetrics(metrics: metrics) { served.contains($0) })
        if configuration.page {
            router.get("/") { _, _ in
                Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8",
                                                .init("Content-Security-Policy")!: WebPage.policy],
                         body: .init(byteBuffer: ByteBuffer(string: WebPage.html)))
            }
        }
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
            if let faces = request.uri.queryParameters["faces"] {
                return try await self.embedFaces(request, context, all: try Self.allFaces(String(faces)))
            }
            let output = try self.model(context).embeddingOutput
            let (model, row) = try await self.infer(request, context, output: output)
            return try Self.json(["model": model.name.rawValue, "output": output.rawValue, "dimension": row.count,
                                  "embedding": row.map(Double.init)])
        }
        addExplainRoutes(to: router)
        addFaceRoutes(to: router)
        addOpenInferenceRoutes(to: router)
        return router
    }

    /// `/v1`'s inference: reads the image of a request, preprocesses it for the model, and runs it in the next
    /// batch. Admission comes first — a place in the model's queue and the request's bytes within the server's
    /// budget — so that an overloaded server answers 503 before it reads a body. Decoding runs on the decode pool
    /// with a time limit.
    func infer(_ request: Request, _ context: ServerContext, output: OutputName) async throws
        -> (InceptionModel, [Float])
    {
        let batcher = try batcher(context)
        let model = batcher.model
        guard model.graph.outputs[output] != nil else {
            let problem = InputError.unknownOutput(output, model: model.name.rawValue, available: model.outputNames)
            throw InferenceError(.badInput, problem.description)
        }
        return try await withAdmission(batcher) { admission in
            let bytes = try reserveBody(request)
            defer { budget.release(bytes) }
            let pixels = try await decode(try await imageBytes(request, context), for: model)
            let channel = context.channel
            let row: [Float]
            do {
                row = try await batcher.run(pixels: pixels, output: output, announced: admission.handOver()) {
                    !channel.isActive
                }
            } catch let error as Batcher.Refusal {
                throw refusal(error, model: model)
            }
            // The weights' fault, not the request's: 500 with the CLI's line.
            guard row.allSatisfy(\.isFinite) else {
                throw InferenceError(.internalError, OutputError.nonFinite(output: output).description)
            }
            return (model, row)
        }
    }

    /// What a client needs to know about a model: input size, label space, preprocessing, outputs.
    func describe(_ name: ModelName) -> [String: Any] {
        let p = name.spec.preprocessing
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
        try batcher(named: context.parameters.get("model") ?? "")
    }

    /// The model's batcher: 404 for a model this server does not have, 503 while it loads.
    func batcher(named requested: String) throws -> Batcher {
        guard let name = ModelName(rawValue: requested), let state = states.withLock({ $0[name] }) else {
            throw InferenceError(.notFound, "unknown model \(quoted(requested)); this server has "
                                 + sources.map(\.name.rawValue).joined(separator: ", "))
        }
        guard case let .ready(batcher) = state else {
            throw InferenceError(.loading, "model \(name) is still loading", retryAfter: 1)
        }
        return batcher
    }

    /// `?top=k`: at least 1; more than the model's classes gives them all (as the command line's `--top`).
    static func top(_ request: Request, classes: Int) throws -> Int {
        guard let value = request.uri.queryParameters["top"] else { return min(5, classes) }
        guard let top = Int(String(value)), top >= 1 else {
            throw InferenceError(.badInput, "top must be a whole number of at least 1, not \(quoted(value))")
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
