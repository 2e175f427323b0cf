import Foundation
import Inception
import InceptionServer
import InceptionReferences
import InceptionTestSupport
import Testing

/// The Open Inference Protocol (KServe V2) against the real client: `scripts/triton_check.py` drives a live
/// `inception serve` with `tritonclient.http` from PyPI — health, metadata, FP32 and BYTES inputs with binary data on
/// and off at batch 1 and 3 (bitwise equal to `inception predict`), classification=5 (equal to `inception classify
/// --top 5`), and every error path (the client's InferenceServerException carrying our message).
@Suite struct OpenInferenceTests {
    @Test func tritonClientAgreesWithTheCommandLine() async throws {
        let weights = try References.weights(.inceptionResNetV1FaceNet).path
        let server = try ServerProcess(["--model", "inception_resnet_v1_facenet", "--weights", weights])
        try await server.waitUntilReady()
        let images = try ["rocket.jpg", "chelsea_rgb.png", "coffee_gray.png"].map {
            try Photos.imageURL($0).path
        }
        let result = try run(venvPython(), [repositoryRoot.appendingPathComponent("scripts/triton_check.py").path,
                                            "--url", "127.0.0.1:\(server.port)", "--model",
                                            "inception_resnet_v1_facenet", "--weights", weights, "--inception",
                                            inceptionExecutable().path] + images)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.hasSuffix("triton_check: every check passed\n"))
    }

    /// The gRPC half against `tritonclient.grpc` (`triton_check.py --protocol grpc`): health, metadata, FP32 and
    /// BYTES inputs in raw_input_contents and in the typed contents at batch 1 and 3 (bitwise equal to `inception
    /// predict`), classification=5, the client's error paths and the requests it cannot send (each with its status
    /// code and message); every call counted in /metrics by method and code.
    @Test func tritonGRPCClientAgreesWithTheCommandLine() async throws {
        let weights = try References.weights(.inceptionResNetV1FaceNet).path
        let server = try ServerProcess(["--model", "inception_resnet_v1_facenet", "--weights", weights], grpc: true)
        try await server.waitUntilReady()
        let images = try ["rocket.jpg", "chelsea_rgb.png", "coffee_gray.png"].map { try Photos.imageURL($0).path }
        let result = try run(venvPython(), [Self.check, "--protocol", "grpc", "--url", "127.0.0.1:\(server.grpcPort!)",
                                            "--model", "inception_resnet_v1_facenet", "--weights", weights,
                                            "--inception", inceptionExecutable().path] + images)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.hasSuffix("triton_check: every check passed\n"))
        let metrics = String(decoding: try await server.client.get("/metrics").body, as: UTF8.self)
        let calls = metrics.split(separator: "\n").filter { $0.hasPrefix("inception_grpc_requests_total{") }
        for (method, code) in [("ModelInfer", "ok"), ("ModelInfer", "invalidArgument"), ("ModelMetadata", "notFound"),
                               ("ServerLive", "ok")] {
            #expect(calls.contains { $0.contains("method=\"\(method)\"") && $0.contains("code=\"\(code)\"") },
                    "\(method) \(code) in \(calls)")
        }
    }

    /// Past the queue, gRPC answers RESOURCE_EXHAUSTED with a retry hint where HTTP answers 503 with Retry-After;
    /// a call whose message does not arrive within the body timeout is DEADLINE_EXCEEDED, as a stalled HTTP body is
    /// closed.
    @Test func grpcOverloadAndStalledCallsAreRefused() async throws {
        let server = try ServerProcess(["--model", "inception_resnet_v1_facenet", "--random-weights", "1",
                                        "--max-queue", "1", "--max-batch", "1", "--body-timeout", "1"], grpc: true)
        try await server.waitUntilReady()
        let result = try run(venvPython(), [Self.check, "--protocol", "grpc", "--pressure", "--url",
                                            "127.0.0.1:\(server.grpcPort!)", "--model", "inception_resnet_v1_facenet",
                                            "--weights", "-", "--inception", "-",
                                            try Photos.imageURL("rocket.jpg").path])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
    }

    static var check: String { repositoryRoot.appendingPathComponent("scripts/triton_check.py").path }

    /// JSON tensors at the model's own size, with the default limits: `tritonclient.http` with binary_data=False at
    /// batch 1 and 8 of 299² images (about 45 MB of JSON) answers bitwise what `inception predict` does, as binary
    /// data does; the server's peak memory stays within its weights, its arenas and its byte budget. The same
    /// server's gRPC service answers a batch of 8 alike through `tritonclient.grpc`.
    @Test func jsonTensorsAtTheModelsOwnSize() async throws {
        let weights = try References.weights(.inceptionV4).path
        let server = try ServerProcess(["--model", "inception_v4", "--weights", weights], grpc: true)
        try await server.waitUntilReady()
        let images = try ["rocket.jpg", "chelsea_rgb.png", "coffee_gray.png"].map { try Photos.imageURL($0).path }
        let common = ["--model", "inception_v4", "--weights", weights, "--inception", inceptionExecutable().path]
        let result = try run(venvPython(), [Self.check, "--url", "127.0.0.1:\(server.port)", "--batches", "1,8"]
                             + common + images)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("FP32 input, batch 8, binary_data=False: logits bitwise equal"))
        let grpc = try run(venvPython(), [Self.check, "--protocol", "grpc", "--url", "127.0.0.1:\(server.grpcPort!)",
                                          "--batches", "8"] + common + images)
        #expect(grpc.status == 0, "\(grpc.stdout)\(grpc.stderr)")
        #expect(grpc.stdout.contains("FP32 input, batch 8, raw_input_contents=True: logits bitwise equal"))
        let peak = residentMemory(pid: server.process.processIdentifier).peak
        print("serve inception_v4, JSON batch 8 at 299²: peak RSS \(peak >> 20) MB")
        // Measured 708 MB (Zen 1) over HTTP alone, 888 MB with the gRPC calls after: the weights, the batch's arenas
        // and the byte budget (5 × 52 MB).
        #expect(peak < 1 << 30, "peak \(peak >> 20) MB")
    }

    /// Malformed requests get 400 with a message naming the fault, and the server goes on answering.
    @Test func malformedRequestsAreNamedAndRefused() async throws {
        let face = InferenceServer.ModelSource(.inceptionResNetV1FaceNet) {
            InceptionModel(.inceptionResNetV1FaceNet, randomSeed: 1)
        }
        let path = "/v2/models/inception_resnet_v1_facenet/infer"
        func json(_ object: Any) -> Data { try! JSONSerialization.data(withJSONObject: object) }
        func binary(_ header: Any, _ tail: [UInt8], _ fragment: String) -> (Data, [String: String], String) {
            let h = json(header)
            return (h + Data(tail), ["Inference-Header-Content-Length": "\(h.count)"], fragment)
        }
        let input: [String: Any] = ["name": "input", "datatype": "FP32", "shape": [1, 3, 160, 160]]
        let image: [String: Any] = ["name": "image", "datatype": "BYTES", "shape": [1]]
        func with(_ entry: [String: Any], _ extra: [String: Any]) -> [String: Any] { entry.merging(extra) { $1 } }
        let cases: [(Data, [String: String], String)] = [
            (Data("not json".utf8), [:], "the inference request is not a JSON object"),
            (Data("{}".utf8), ["Inference-Header-Content-Length": "1000"], "is beyond the body of 2 bytes"),
            (Data("{}".utf8), ["Inference-Header-Content-Length": "abc"], "'abc' is not a length"),
            (json(["inputs": []]), [:], "the inference request has no inputs"),
            (json(["inputs": [with(input, ["data": [1, 2, 3]])]]), [:], "3 values for a shape of 76800"),
            (json(["inputs": [with(input, ["shape": [1, 3, 2, 2], "data": Array(repeating: "x", count: 12)])]]), [:],
             "FP32 data must be numbers"),
            (json(["inputs": [with(input, ["shape": [4_611_686_018_427_387_904, 4], "data": [1]])]]), [:],
             "is not a tensor's shape"),
            (json(["inputs": [with(image, ["data": ["x"]]), with(image, ["name": "other", "data": ["y"]])]]), [:],
             "send one input"),
            binary(["inputs": [with(image, ["parameters": ["binary_data_size": 100]])]], [1, 2, 3],
                "binary_data_size is beyond the binary data sent"),
            binary(["inputs": [with(image, ["parameters": ["binary_data_size": 8]])]], [232, 3, 0, 0, 1, 2, 3, 4],
                "the BYTES data do not hold 1 length-prefixed elements"),
            binary(["inputs": [with(image, ["parameters": ["binary_data_size": 5]])]], [1, 0, 0, 0, 9, 7],
                "1 bytes of binary data follow the last input's"),
            binary(["inputs": [with(image, ["parameters": ["binary_data_size": 5]])]], [1, 0, 0, 0, 9],
                "not a JPEG or PNG image"),
            binary(["inputs": [with(input, ["shape": [1, 3, 160, 160], "parameters": ["binary_data_size": 307_200]])]],
                   [0, 0, 0xc0, 0x7f] + [UInt8](repeating: 0, count: 307_196), "NaN or infinite"),
            (json(["inputs": [with(image, ["data": ["x"]])], "outputs": [["name": "logits",
                                                                            "parameters": ["classification": 0]]]]),
             [:], "classification must be a whole number of at least 1"),
        ]
        try await TestServer.with([face]) { server in
            for (body, headers, fragment) in cases {
                let reply = try await server.post(path, body, headers: headers)
                #expect(reply.status == 400 && (reply.error ?? "").contains(fragment),
                        "\(reply.status) \(reply.error ?? "") for '\(fragment)'")
            }
            #expect(try await server.get("/v2/health/live").status == 200)
            #expect(try await server.get("/v2/models/no_such_model").status == 404)
        }
    }

    /// A request of JSON numbers may be as large as a batch of `jsonBatch` images at the model's input size (24 bytes
    /// a number), binary data and `/v1` bodies as `maxBodyBytes`; beyond, 413 naming the limit. By default the bytes
    /// in flight admit one such request parsed (5 bytes a byte); a `maxBytesInFlight` given is kept, and a JSON
    /// request that could never fit it is 413, pointing at binary data.
    @Test func jsonBodiesAreSizedFromTheModel() async throws {
        let face = InferenceServer.ModelSource(.inceptionResNetV1FaceNet) {
            InceptionModel(.inceptionResNetV1FaceNet, randomSeed: 1)
        }
        let path = "/v2/models/inception_resnet_v1_facenet/infer"
        func body(_ count: Int) -> Data {
            let numbers = Array(repeating: "-0.12345678901234567", count: count).joined(separator: ", ")
            return Data(#"{"inputs":[{"name":"input","datatype":"FP32","shape":[1],"data":[\#(numbers)]}]}"#.utf8)
        }
        // One image at 160² as JSON: 1 843 200 bytes; a body of 100 000 numbers is 2.2 MB.
        try await TestServer.with([face], configure: {
            $0.maxBodyBytes = 1 << 20; $0.jsonBatch = 2
        }) { server in
            let json = try await server.post(path, body(100_000))
            #expect(json.status == 400 && json.error == "input 'input': more data than its shape",
                    "admitted and read: \(json.status) \(json.error ?? "")")
            let binary = try await server.post(path, body(100_000),
                                               headers: ["Inference-Header-Content-Length": "\(body(100_000).count)"])
            #expect(binary.status == 413
                    && binary.error == "the request body is larger than the limit of 1048576 bytes",
                    "\(binary.status) \(binary.error ?? "")")
            let tooLarge = try await server.post(path, body(200_000))
            #expect(tooLarge.status == 413
                    && tooLarge.error == "the request body is larger than the limit of 3686400 bytes",
                    "\(tooLarge.status) \(tooLarge.error ?? "")")
        }
        try await TestServer.with([face], configure: {
            $0.maxBytesInFlight = 1 << 20; $0.maxBodyBytes = 1 << 20; $0.jsonBatch = 2
        }) { server in
            let reply = try await server.post(path, body(40_000))
            #expect(reply.status == 413 && (reply.error ?? "").hasSuffix("send the tensor as binary data"),
                    "\(reply.status) \(reply.error ?? "")")
        }
    }
}
