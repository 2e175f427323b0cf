import Foundation
import HTTPTypes
import Hummingbird
import Inception
import InceptionIO
import NIOCore

extension HTTPField.Name {
    static let inferenceHeaderContentLength = Self("Inference-Header-Content-Length")!
}

/// The `/v2` routes of the Open Inference Protocol (see `OpenInference`).
extension InferenceServer {
    func addOpenInferenceRoutes(to router: Router<ServerContext>) {
        router.get("/v2") { _, _ in try Self.json(ServerMetadata().json) }
        router.get("/v2/health/live") { _, _ in Response(status: .ok) }
        router.get("/v2/health/ready") { _, _ in Response(status: self.everyModelReady ? .ok : .serviceUnavailable) }
        for prefix in ["/v2/models/:model", "/v2/models/:model/versions/:version"] {
            router.get(RouterPath(prefix)) { _, context in try Self.json(try self.v2Metadata(context)) }
            router.get(RouterPath(prefix + "/ready")) { _, context in
                _ = try self.batcher(context)
                return Response(status: .ok)
            }
            router.post(RouterPath(prefix + "/infer")) { request, context in try await self.v2Infer(request, context) }
        }
    }

    var everyModelReady: Bool {
        states.withLock { $0.values.allSatisfy { if case .ready = $0 { true } else { false } } }
    }

    func v2Metadata(_ context: ServerContext) throws -> [String: Any] {
        ModelMetadata(try batcher(context).model).json
    }

    /// An inference request: admitted as `/v1`'s are, its body read within the limit, its images decoded on the
    /// decode pool (BYTES) or taken as they are (FP32), each run through the model's batcher, the outputs answered
    /// as JSON or binary tensor data.
    func v2Infer(_ request: HummingbirdCore.Request, _ context: ServerContext) async throws -> Response {
        let batcher = try batcher(context)
        let model = batcher.model
        return try await withAdmission(batcher) { admission in
            let headerLength = try request.headers[.inferenceHeaderContentLength].map { value -> Int in
                guard let length = Int(value) else {
                    throw InferenceError(.badInput,
                                   "Inference-Header-Content-Length '\(value.prefix(20))' is not a length")
                }
                return length
            }
            // A body of JSON numbers may be a batch of 8 at the model's input size; the JSON part (all of the body
            // without binary data) grows when parsed: reserved as such.
            let limit = headerLength == nil ? Self.jsonBodyLimit(configuration, inputSize: model.inputSize)
                : configuration.maxBodyBytes
            let bytes = try reserveBody(request, limit: limit) { headerLength ?? $0 }
            defer { budget.release(bytes) }
            let body = try await collectBody(request, limit: limit)
            let parsed = try await offTheEventLoops { try OpenInference.parse(body, headerLength: headerLength) }
            let channel = context.channel
            let outputs = try await v2Outputs(parsed, on: batcher, admission: admission) { !channel.isActive }
            return v2Response(outputs, model: model, id: parsed.id)
        }
    }

    /// One output of an answer: what the request asked of it, and its tensor.
    struct OutputTensor {
        let request: OpenInference.OutputRequest
        let datatype: String
        let shape: [Int]
        let payload: OpenInference.Payload
    }

    /// The outputs a parsed request asks for (every output of the model when it names none), its images run through
    /// the batcher once per output; REST and gRPC alike. `clientGone` tells the batcher the caller has left.
    func v2Outputs(_ parsed: OpenInference.Request, on batcher: Batcher, admission: Admission,
                   clientGone: @escaping @Sendable () -> Bool) async throws -> [OutputTensor] {
        let model = batcher.model
        let images = try await v2Images(parsed, model: model)
        let wanted = parsed.outputs ?? model.outputNames.sorted().map {
            OpenInference.OutputRequest(name: $0.rawValue, binary: parsed.binaryOutputs, classification: nil)
        }
        var outputs: [OutputTensor] = []
        for output in wanted {
            let name = OutputName(output.name)
            guard model.graph.outputs[name] != nil else {
                let problem = InputError.unknownOutput(name, model: model.name.rawValue, available: model.outputNames)
                throw InferenceError(.badInput, problem.description)
            }
            let rows = try await run(images, output: name, on: batcher, announced: admission.handOver(),
                                     clientGone: clientGone)
            outputs.append(tensor(output, rows: rows, model: model))
        }
        return outputs
    }

    /// An output's rows as the request asked: FP32 `[N, width]`, or with the classification extension BYTES
    /// `[N, k]` of `"score:index:label"` (labels for logits, the index for other outputs), as Triton writes them.
    func tensor(_ request: OpenInference.OutputRequest, rows: [[Float]], model: InceptionModel) -> OutputTensor {
        guard let k = request.classification else {
            return OutputTensor(request: request, datatype: "FP32", shape: [rows.count, rows.first?.count ?? 0],
                                payload: .floats(rows.flatMap { $0 }))
        }
        let top = min(k, rows.first?.count ?? 0)
        let labels = rows.map { row in
            topIndices(row, top).map {
                let label = OutputName(request.name) == .logits ? model.label($0).name : "\($0)"
                return Data(String(format: "%f:%d:%@", row[$0], $0, label).utf8)
            }
        }
        return OutputTensor(request: request, datatype: "BYTES", shape: [rows.count, top],
                            payload: .bytes(labels.flatMap { $0 }))
    }

    /// The body limit of a request of JSON tensors for `model`: `maxBodyBytes`, or a batch of `jsonBatch` images
    /// at the model's input size as JSON numbers if that is more.
    static func jsonBodyLimit(_ configuration: Configuration, inputSize: Int) -> Int {
        max(configuration.maxBodyBytes, configuration.jsonBatch * OpenInference.jsonBytesPerImage(inputSize: inputSize))
    }

    /// A request read on the decode pool (REST's JSON, gRPC's message as tensors): a large request takes a moment,
    /// which must not stall the event loops or Swift's cooperative pool.
    func offTheEventLoops(_ read: @escaping @Sendable () throws -> OpenInference.Request) async throws
        -> OpenInference.Request
    {
        let pool = try decodePool()
        do {
            return try await pool.run(read)
        } catch let error as Batcher.Refusal {
            throw InferenceError(.shuttingDown, error.description, retryAfter: 1)
        } catch let error as OpenInference.RequestError {
            throw InferenceError(.badInput, error.description)
        }
    }

    /// The request's images as NHWC pixels of the model's input size.
    func v2Images(_ request: OpenInference.Request, model: InceptionModel) async throws -> [[Float]] {
        guard request.inputs.count == 1, let input = request.inputs.first else {
            throw InferenceError(.badInput,
                                 "send one input, 'input' (FP32) or 'image' (BYTES); got \(request.inputs.count)")
        }
        let size = model.inputSize
        switch (input.name, input.payload) {
        case let ("input", .floats(values)):
            guard input.datatype == "FP32", input.shape.count == 4, input.shape[1...] == [3, size, size],
                  (1...OpenInference.maximumBatch).contains(input.shape[0]) else {
                throw InferenceError(.badInput, "input 'input' must be FP32 [N, 3, \(size), \(size)] with N in "
                                     + "1…\(OpenInference.maximumBatch); got \(quoted(input.datatype)) "
                                     + quoted(input.shape))
            }
            if let problem = InputError.nonFinite(in: values) { throw InferenceError(.badInput, problem.description) }
            return OpenInference.nhwcImages(values, count: input.shape[0], size: size)
        case let ("image", .bytes(images)):
            guard input.datatype == "BYTES", input.shape.count == 1,
                  (1...OpenInference.maximumBatch).contains(images.count) else {
                throw InferenceError(.badInput, "input 'image' must be BYTES [N] with N in "
                                     + "1…\(OpenInference.maximumBatch); got \(quoted(input.datatype)) "
                                     + quoted(input.shape))
            }
            guard request.detect else { return try await images.asyncMap { try await decode($0, for: model) } }
            let detector = try faceDetector()
            return try await images.enumerated().asyncMap { k, image in
                let crop = try await search(image, detector) { photo, faces in
                    faces.first.flatMap { try? model.prepare(face: $0, in: photo) }
                }
                guard let crop else { throw InferenceError(.badInput, "image \(k): no face found") }
                return crop
            }
        default:
            throw InferenceError(.badInput, "unknown input \(quoted(input.name)) (\(quoted(input.datatype))): this "
                                 + "model takes 'input' (FP32 [N, 3, \(size), \(size)]) or 'image' (BYTES [N])")
        }
    }

    /// Each image's `output` row through the batcher (concurrently, so that they batch together); the first uses
    /// the request's admission when `announced`.
    func run(_ images: [[Float]], output: OutputName, on batcher: Batcher, announced: Bool,
             clientGone: @escaping @Sendable () -> Bool) async throws -> [[Float]] {
        do {
            return try await withThrowingTaskGroup(of: (Int, [Float]).self) { group in
                for (i, pixels) in images.enumerated() {
                    group.addTask {
                        (i, try await batcher.run(pixels: pixels, output: output, announced: announced && i == 0,
                                                  abandoned: clientGone))
                    }
                }
                var rows = [[Float]](repeating: [], count: images.count)
                for try await (i, row) in group { rows[i] = row }
                guard rows.allSatisfy({ $0.allSatisfy(\.isFinite) }) else {
                    throw InferenceError(.internalError, OutputError.nonFinite(output: output).description)
                }
                return rows
            }
        } catch let error as Batcher.Refusal {
            throw refusal(error, model: batcher.model)
        }
    }

    /// The outputs as JSON, or with the binary extension a JSON header (its length in
    /// `Inference-Header-Content-Length`) followed by the binary outputs in order.
    func v2Response(_ outputs: [OutputTensor], model: InceptionModel, id: String?) -> Response {
        var json = JSONWriter(), binary = Data()
        json.raw("{")
        json.key("model_name")
        json.string(model.name.rawValue)
        json.raw(",\"model_version\":\"1\",")
        if let id {
            json.key("id")
            json.string(id)
            json.raw(",")
        }
        json.key("outputs")
        json.array(outputs) { json, output in
            json.raw("{")
            json.key("name")
            json.string(output.request.name)
            json.raw(",")
            json.key("datatype")
            json.string(output.datatype)
            json.raw(",")
            json.key("shape")
            json.array(output.shape) { $0.number($1) }
            json.raw(",")
            if output.request.binary {
                let data = OpenInference.binary(output.payload)
                json.raw("\"parameters\":{\"binary_data_size\":")
                json.number(data.count)
                json.raw("}")
                binary.append(data)
            } else {
                json.key("data")
                switch output.payload {
                case let .floats(values): json.array(values) { $0.number($1) }
                case let .bytes(values): json.array(values) { $0.string(String(decoding: $1, as: UTF8.self)) }
                }
            }
            json.raw("}")
        }
        json.raw("}")
        var headers: HTTPFields = [.contentType: binary.isEmpty ? "application/json" : "application/octet-stream"]
        if !binary.isEmpty { headers[.inferenceHeaderContentLength] = String(json.bytes.count) }
        var body = ByteBuffer(bytes: json.bytes)
        body.writeBytes(binary)
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: body))
    }
}

extension OpenInference {
    /// Text one JSON number takes at most as clients write them: a Float as a Python float's repr
    /// ("-0.12345678901234567", 20 bytes) and ", ".
    static let jsonBytesPerNumber = 24

    /// One preprocessed image at `inputSize` as JSON numbers.
    static func jsonBytesPerImage(inputSize: Int) -> Int { 3 * inputSize * inputSize * jsonBytesPerNumber }

    /// Each image of an NCHW batch as the model's NHWC pixels (one copy, no intermediate tensor).
    static func nhwcImages(_ nchw: [Float], count: Int, size: Int) -> [[Float]] {
        let plane = size * size
        return (0..<count).map { n in
            let base = n * 3 * plane
            return [Float](unsafeUninitializedCapacity: 3 * plane) { pixels, initialized in
                for p in 0..<plane {
                    for c in 0..<3 { pixels[3 * p + c] = nchw[base + c * plane + p] }
                }
                initialized = 3 * plane
            }
        }
    }

    /// A tensor's bytes in the binary extension: FP32 little-endian; BYTES each as a 4-byte little-endian length
    /// and its bytes.
    static func binary(_ payload: Payload) -> Data {
        switch payload {
        case let .floats(values):
            var data = Data(capacity: 4 * values.count)
            for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
            return data
        case let .bytes(values):
            var data = Data()
            for v in values {
                withUnsafeBytes(of: UInt32(v.count).littleEndian) { data.append(contentsOf: $0) }
                data.append(v)
            }
            return data
        }
    }
}
