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

    /// JSON grows when parsed (up to 28× for "1,1,1,…"): its bytes count that many times against the bytes in
    /// flight, and a JSON request that could never fit is 413, pointing at binary data.
    @Test func jsonIsReservedAsParsed() async throws {
        let face = InferenceServer.ModelSource(.inceptionResNetV1FaceNet) {
            InceptionModel(.inceptionResNetV1FaceNet, randomSeed: 1)
        }
        let numbers = Array(repeating: "1", count: 40_000).joined(separator: ",")
        let body = Data(#"{"inputs":[{"name":"input","datatype":"FP32","shape":[1],"data":[\#(numbers)]}]}"#.utf8)
        try await TestServer.with([face], configure: { $0.maxBytesInFlight = 1 << 20; $0.maxBodyBytes = 1 << 20 }) {
            let reply = try await $0.post("/v2/models/inception_resnet_v1_facenet/infer", body)
            #expect(reply.status == 413 && (reply.error ?? "").hasSuffix("send the tensor as binary data"),
                    "\(reply.status) \(reply.error ?? "")")
            let binary = try await $0.post("/v2/models/inception_resnet_v1_facenet/infer", body,
                                           headers: ["Inference-Header-Content-Length": "\(body.count)"])
            #expect(binary.status == 413, "the whole body declared as the JSON header counts the same")
        }
    }
}
