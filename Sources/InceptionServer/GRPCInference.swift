import Foundation
import GRPCCore
import Inception

/// The Open Inference Protocol's gRPC half: `inference.GRPCInferenceService` as Triton and KServe define it
/// (`tritonclient.grpc` talks to it unchanged) — ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata
/// and ModelInfer, with inputs in `raw_input_contents` or the typed `contents` and outputs in
/// `raw_output_contents`, as Triton answers. The same models, inputs (`input` FP32, `image` BYTES), classification
/// extension, batcher, admission, byte budget and one-line errors as the REST half; other RPCs are UNIMPLEMENTED.
///
/// A thin adapter over the same inference core as HTTP: `InferenceError`'s kinds map to gRPC's codes
/// (`InferenceError.code`). A request's deadline (`grpc-timeout`) cancels it; a cancelled request leaves the
/// batcher's queue as a closed connection does. What reaches this service has passed `GRPCStreamGate`: its headers
/// checked, its message whole, reserved in the server's byte budget and (for ModelInfer) counted.
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
            } catch is InferenceError {
                return .with { $0.ready = false }
            }
        }
    }

    func serverMetadata(request: Inference_ServerMetadataRequest,
                        context: GRPCCore.ServerContext) async throws -> Inference_ServerMetadataResponse {
        try await counted("ServerMetadata") {
            let metadata = ServerMetadata()
            return .with {
                ($0.name, $0.version, $0.extensions) = (metadata.name, metadata.version, metadata.extensions)
            }
        }
    }

    /// As `GET /v2/models/{model}`: inputs `input` FP32 [-1, 3, S, S] and `image` BYTES [-1], the model's outputs.
    func modelMetadata(request: Inference_ModelMetadataRequest,
                       context: GRPCCore.ServerContext) async throws -> Inference_ModelMetadataResponse {
        try await counted("ModelMetadata", model: request.name) {
            let metadata = ModelMetadata(try server.batcher(named: request.name).model)
            func tensor(_ tensor: ModelMetadata.Tensor) -> Inference_ModelMetadataResponse.TensorMetadata {
                .with {
                    ($0.name, $0.datatype, $0.shape) = (tensor.name, tensor.datatype, tensor.shape.map(Int64.init))
                }
            }
            return .with {
                ($0.name, $0.versions, $0.platform) = (metadata.name, metadata.versions, metadata.platform)
                ($0.inputs, $0.outputs) = (metadata.inputs.map(tensor), metadata.outputs.map(tensor))
            }
        }
    }

    /// As `POST /v2/models/{model}/infer`: a place in the model's queue first (the message's bytes were reserved in
    /// the server's budget by the gate), the request read on the decode pool, each output's rows through the batcher,
    /// answered in `raw_output_contents`.
    func modelInfer(request: Inference_ModelInferRequest,
                    context: GRPCCore.ServerContext) async throws -> Inference_ModelInferResponse {
        try await counted("ModelInfer", model: request.modelName) {
            let batcher = try server.batcher(named: request.modelName)
            return try await server.withAdmission(batcher) { admission in
                let parsed = try await server.offTheEventLoops { try OpenInference.request(request) }
                let (cancellation, server) = (context.cancellation, server)
                let outputs: [InferenceServer.OutputTensor]
                do {
                    outputs = try await server.v2Outputs(parsed, on: batcher, admission: admission) {
                        cancellation.isCancelled || server.drainExpired.withLock { $0 }
                    }
                } catch let error as InferenceError where error.kind == .clientGone
                                                          && server.drainExpired.withLock({ $0 }) {
                    throw InferenceError(.shuttingDown, "the server stopped before this request ran "
                                         + "(its drain deadline passed)")
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
        case let error as InferenceError:
            var metadata: Metadata = [:]
            if let seconds = error.retryAfter {
                metadata.addString(String(1000 * seconds), forKey: "grpc-retry-pushback-ms")
            }
            return RPCError(code: error.code, message: error.message, metadata: metadata)
        case is CancellationError:
            // Past the drain deadline the server cancels what is left: not the client's doing.
            return RPCError(code: .unavailable, message: Batcher.Refusal.shuttingDown.description)
        default: return RPCError(code: .internalError, message: InferenceError(.internalError, "\(error)").message)
        }
    }
}

/// The gRPC half's adapter: an `InferenceError`'s kind as gRPC's code.
extension InferenceError {
    var code: RPCError.Code {
        switch kind {
        case .badInput: .invalidArgument
        case .notFound: .notFound
        case .tooLarge, .overloaded: .resourceExhausted
        case .loading, .shuttingDown: .unavailable
        case .clientGone: .cancelled
        case .internalError: .internalError
        }
    }
}

extension OpenInference {
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
            let count = try checkedCount(shape, name: input.name)
            let payload = raw.isEmpty
                ? try typedPayload(input, count: count)
                : try binaryPayload(raw[i], name: input.name, datatype: input.datatype, count: count)
            return Input(name: input.name, datatype: input.datatype, shape: shape, payload: payload)
        }
        let outputs = try message.outputs.map { output in
            var request = OutputRequest(name: output.name, binary: true, classification: nil)
            if let k = output.parameters["classification"] {
                guard case let .int64Param(k)? = k.parameterChoice, k >= 1, k <= Int32.max else {
                    throw RequestError("output \(quoted(output.name)): classification must be an int64 of at least 1")
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
                throw RequestError("input \(quoted(name)): \(contents.fp32Contents.count) fp32_contents for a shape of "
                                   + "\(count)")
            }
            return .floats(contents.fp32Contents)
        case "BYTES":
            guard contents.bytesContents.count == count else {
                throw RequestError("input \(quoted(name)): \(contents.bytesContents.count) bytes_contents for a shape "
                                   + "of \(count)")
            }
            return .bytes(contents.bytesContents)
        default:
            throw RequestError("input \(quoted(name)): datatype \(quoted(input.datatype)) is not FP32 or BYTES")
        }
    }
}
