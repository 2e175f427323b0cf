import Foundation
import GRPCCore
import Inception

/// The Open Inference Protocol's gRPC half: `inference.GRPCInferenceService` as Triton and KServe define it
/// (`tritonclient.grpc` talks to it unchanged) — ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata
/// and ModelInfer, with inputs in `raw_input_contents` or the typed `contents` and outputs in
/// `raw_output_contents`, as Triton answers. The same models, inputs (`input` FP32, `image` BYTES), classification
/// extension, batcher, admission, byte budget and one-line errors as the REST half; other RPCs are UNIMPLEMENTED.
///
/// Errors map from their HTTP status: 400 → INVALID_ARGUMENT, 404 → NOT_FOUND, 413 and 503 → RESOURCE_EXHAUSTED
/// (503's retry hint as `grpc-retry-pushback-ms`), 499 → CANCELLED, 500 → INTERNAL. A request's deadline
/// (`grpc-timeout`) cancels it; a cancelled request leaves the batcher's queue as a closed connection does.
struct GRPCInference: Inference_GRPCInferenceService.SimpleServiceProtocol {
    let server: InferenceServer

    func serverLive(request: Inference_ServerLiveRequest,
                    context: GRPCCore.ServerContext) async throws -> Inference_ServerLiveResponse {
        try await counted("ServerLive") { .with { $0.live = true } }
    }

    func serverReady(request: Inference_ServerReadyRequest,
                     context: GRPCCore.ServerContext) async throws -> Inference_ServerReadyResponse {
        try await counted("ServerReady") { .with { $0.ready = server.everyModelReady } }
    }

    /// Ready once loaded; not ready while loading, nor for a model this server does not have (as the REST half's
    /// 404 reads to a client: `is_model_ready` is false).
    func modelReady(request: Inference_ModelReadyRequest,
                    context: GRPCCore.ServerContext) async throws -> Inference_ModelReadyResponse {
        try await counted("ModelReady", model: request.name) {
            do {
                _ = try server.batcher(named: request.name)
                return .with { $0.ready = true }
            } catch is APIError {
                return .with { $0.ready = false }
            }
        }
    }

    func serverMetadata(request: Inference_ServerMetadataRequest,
                        context: GRPCCore.ServerContext) async throws -> Inference_ServerMetadataResponse {
        try await counted("ServerMetadata") {
            .with {
                $0.name = "inception"
                $0.version = InceptionPackage.version
                $0.extensions = OpenInference.extensions
            }
        }
    }

    /// As `GET /v2/models/{model}`: inputs `input` FP32 [-1, 3, S, S] and `image` BYTES [-1], the model's outputs.
    func modelMetadata(request: Inference_ModelMetadataRequest,
                       context: GRPCCore.ServerContext) async throws -> Inference_ModelMetadataResponse {
        try await counted("ModelMetadata", model: request.name) {
            let model = try server.batcher(named: request.name).model
            let size = Int64(model.inputSize)
            func tensor(_ name: String, _ datatype: String, _ shape: [Int64]) -> Inference_ModelMetadataResponse
                .TensorMetadata { .with { ($0.name, $0.datatype, $0.shape) = (name, datatype, shape) } }
            return .with {
                ($0.name, $0.versions, $0.platform) = (model.name.rawValue, ["1"], "inception")
                $0.inputs = [tensor("input", "FP32", [-1, 3, size, size]), tensor("image", "BYTES", [-1])]
                $0.outputs = model.outputNames.map {
                    tensor($0.rawValue, "FP32", [-1, Int64(model.width(of: $0) ?? 0)])
                }
            }
        }
    }

    /// As `POST /v2/models/{model}/infer`: a place in the model's queue first, the request's tensor bytes within the
    /// server's budget, each output's rows through the batcher, answered in `raw_output_contents`.
    func modelInfer(request: Inference_ModelInferRequest,
                    context: GRPCCore.ServerContext) async throws -> Inference_ModelInferResponse {
        try await counted("ModelInfer", model: request.modelName) {
            let batcher = try server.batcher(named: request.modelName)
            return try await server.withAdmission(batcher) { admission in
                let bytes = try server.reserve(OpenInference.tensorBytes(request))
                defer { server.budget.release(bytes) }
                let parsed = try OpenInference.request(request)
                let cancellation = context.cancellation
                let outputs = try await server.v2Outputs(parsed, on: batcher, admission: admission) {
                    cancellation.isCancelled
                }
                return .with { response in
                    (response.modelName, response.modelVersion, response.id) = (batcher.model.name.rawValue, "1",
                                                                                request.id)
                    response.outputs = outputs.map { output in
                        .with { ($0.name, $0.datatype, $0.shape) = (output.request.name, output.datatype,
                                                                    output.shape.map(Int64.init)) }
                    }
                    response.rawOutputContents = outputs.map { OpenInference.binary($0.payload) }
                }
            }
        }
    }

    /// `body` timed and counted by method, model and status code; its errors as gRPC's.
    func counted<R>(_ method: String, model: String = "", _ body: () async throws -> R) async throws -> R {
        let started = ContinuousClock.now
        var code = "ok"
        // The model label only for models this server has, so that clients cannot grow the label set.
        let label = ModelName(rawValue: model).map { name in server.sources.contains { $0.name == name } } == true
            ? model : ""
        defer { server.metrics.grpcRequest(method: method, model: label, code: code, duration: .now - started) }
        do {
            return try await body()
        } catch {
            let rpc = Self.rpcError(error)
            code = "\(rpc.code)"
            throw rpc
        }
    }

    static func rpcError(_ error: any Error) -> RPCError {
        switch error {
        case let error as RPCError: return error
        case let error as OpenInference.RequestError:
            return RPCError(code: .invalidArgument, message: error.description)
        case let error as APIError:
            var metadata: Metadata = [:]
            if let seconds = error.retryAfter {
                metadata.addString(String(1000 * seconds), forKey: "grpc-retry-pushback-ms")
            }
            let code: RPCError.Code = switch error.status.code {
            case 400: .invalidArgument
            case 404: .notFound
            case 413, 503: .resourceExhausted
            case 499: .cancelled
            default: .internalError
            }
            return RPCError(code: code, message: error.message, metadata: metadata)
        default: return RPCError(code: .internalError, message: "\(error)")
        }
    }
}

extension OpenInference {
    /// The tensor bytes a gRPC request carries (raw and typed), which it holds while it runs.
    static func tensorBytes(_ message: Inference_ModelInferRequest) -> Int {
        message.rawInputContents.reduce(0) { $0 + $1.count } + message.inputs.reduce(0) { total, input in
            total + 4 * input.contents.fp32Contents.count + input.contents.bytesContents.reduce(0) { $0 + $1.count }
        }
    }

    /// A gRPC request as the REST half's parsed one: each input's data from `raw_input_contents` (the binary
    /// extension's layout) or its typed `contents`, its shape checked against the element count.
    static func request(_ message: Inference_ModelInferRequest) throws -> Request {
        guard !message.inputs.isEmpty else { throw RequestError("the inference request has no inputs") }
        let raw = message.rawInputContents
        guard raw.isEmpty || raw.count == message.inputs.count else {
            throw RequestError("raw_input_contents has \(raw.count) entries for \(message.inputs.count) inputs")
        }
        let inputs = try message.inputs.enumerated().map { i, input in
            let shape = input.shape.map { Int(clamping: $0) }
            guard shape.allSatisfy({ $0 >= 0 }), let count = elementCount(shape) else {
                throw RequestError("input '\(input.name)': shape \(shape) is not a tensor's shape")
            }
            let payload = raw.isEmpty
                ? try typedPayload(input, count: count)
                : try binaryPayload(raw[i], name: input.name, datatype: input.datatype, count: count)
            return Input(name: input.name, datatype: input.datatype, shape: shape, payload: payload)
        }
        let outputs = try message.outputs.map { output in
            var request = OutputRequest(name: output.name, binary: true, classification: nil)
            if let k = output.parameters["classification"] {
                guard case let .int64Param(k)? = k.parameterChoice, k >= 1, k <= Int32.max else {
                    throw RequestError("output '\(output.name)': classification must be an int64 of at least 1")
                }
                request.classification = Int(k)
            }
            return request
        }
        return Request(inputs: inputs, outputs: outputs.isEmpty ? nil : outputs, binaryOutputs: true,
                       id: message.id.isEmpty ? nil : message.id)
    }

    /// An input's typed `contents`: `fp32_contents` for FP32, `bytes_contents` for BYTES.
    static func typedPayload(_ input: Inference_ModelInferRequest.InferInputTensor, count: Int) throws -> Payload {
        let (contents, name) = (input.contents, input.name)
        switch input.datatype {
        case "FP32":
            guard contents.fp32Contents.count == count else {
                throw RequestError("input '\(name)': \(contents.fp32Contents.count) fp32_contents for a shape of "
                                   + "\(count)")
            }
            return .floats(contents.fp32Contents)
        case "BYTES":
            guard contents.bytesContents.count == count else {
                throw RequestError("input '\(name)': \(contents.bytesContents.count) bytes_contents for a shape of "
                                   + "\(count)")
            }
            return .bytes(contents.bytesContents)
        default:
            throw RequestError("input '\(name)': datatype \(input.datatype) is not FP32 or BYTES")
        }
    }
}
