import Foundation
import Inception
import InceptionIO
import InceptionReferences
import InceptionTestSupport
import Testing

/// The server's face routes answer what the commands answer: `/v1/faces/detect` is `inception faces detect --json`,
/// `/v1/models/{face model}/embed?faces=all` is `inception embed --all-faces`; bad input and a server without MTCNN
/// get one line.
@Suite(.serialized) struct FaceServerTests {
    static let faces = ModelName.inceptionResNetV1FaceNet

    static func photo(_ name: String) -> URL {
        References.directory.appendingPathComponent("faces").appendingPathComponent(name)
    }

    static func detectorWeights() throws -> String { try References.detectorWeights().path }

    static func server() throws -> ServerProcess {
        try ServerProcess(["--model", faces.rawValue, "--weights", try References.weights(faces).path,
                           "--detector-weights", try detectorWeights()])
    }

    @Test func detectAndEmbedAnswerWhatTheCommandsPrint() async throws {
        let server = try Self.server()
        try await server.waitUntilReady()
        let photo = Self.photo("t1.jpg")
        let detected = try await server.client.post("/v1/faces/detect", try Data(contentsOf: photo))
        #expect(detected.status == 200, "\(detected.error ?? "")")
        let cli = try runInception(["faces", "detect", "--json", "--detector-weights", try Self.detectorWeights(),
                                    photo.path])
        let printed = try JSONSerialization.jsonObject(with: Data(cli.stdout.utf8)) as? [String: Any] ?? [:]
        let cliFaces = ((printed["photos"] as? [[String: Any]])?.first?["faces"] as? [[String: Any]]) ?? []
        let served = detected.json["faces"] as? [[String: Any]] ?? []
        #expect(served.count == 8 && served.map { $0["box"] as? [Double] } == cliFaces.map { $0["box"] as? [Double] })
        #expect(detected.json["width"] as? Int == 1280)

        let (multipart, contentType) = multipartBody(try Data(contentsOf: photo))
        let embedded = try await server.client.post("/v1/models/\(Self.faces.rawValue)/embed?faces=all", multipart,
                                                    contentType: contentType)
        #expect(embedded.status == 200, "\(embedded.error ?? "")")
        let scratch = try scratchDirectory("face-server")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let output = scratch.appendingPathComponent("e.npy").path
        let rows = try runInception(["embed", "--model", Self.faces.rawValue, "--weights",
                                     try References.weights(Self.faces).path, "--all-faces", "--output", output,
                                     "--detector-weights", try Self.detectorWeights(), photo.path])
        #expect(rows.status == 0, "\(rows.stderr)")
        let (shape, values) = try NPY.read(contentsOf: URL(fileURLWithPath: output))
        let records = embedded.json["faces"] as? [[String: Any]] ?? []
        #expect(shape == [records.count, 512] && records.count == 8)
        for (k, record) in records.enumerated() {
            let embedding = (record["embedding"] as? [Double] ?? []).map(Float.init)
            let expected = values[(k * 512)..<((k + 1) * 512)]
            #expect(embedding.count == 512 && zip(embedding, expected).allSatisfy { abs($0 - $1) <= 1e-5 })
        }
        let largest = try await server.client.post("/v1/models/\(Self.faces.rawValue)/embed?faces=largest",
                                                   try Data(contentsOf: photo))
        #expect((largest.json["faces"] as? [Any])?.count == 1)
        let metrics = String(decoding: try await server.client.get("/metrics").body, as: UTF8.self)
        #expect(metrics.contains("endpoint=\"/v1/faces/detect\""))
    }

    /// The Open Inference Protocol's `image` with the request parameter `detect: true` embeds the largest face, as
    /// `embed?faces=largest` does; without it, the whole photo.
    @Test func openInferenceDetectsWhenAsked() async throws {
        let server = try Self.server()
        try await server.waitUntilReady()
        let photo = try Data(contentsOf: Self.photo("t1.jpg"))
        func infer(_ parameters: [String: Any]) async throws -> [Double] {
            let input: [String: Any] = ["name": "image", "datatype": "BYTES", "shape": [1],
                                        "parameters": ["binary_data_size": photo.count + 4]]
            let header = try JSONSerialization.data(withJSONObject: ["inputs": [input], "parameters": parameters])
            var length = UInt32(photo.count).littleEndian
            let body = header + Data(bytes: &length, count: 4) + photo
            let reply = try await server.client.post("/v2/models/\(Self.faces.rawValue)/infer", body,
                                                     headers: ["Inference-Header-Content-Length": "\(header.count)"])
            #expect(reply.status == 200, "\(reply.error ?? "")")
            let outputs = reply.json["outputs"] as? [[String: Any]] ?? []
            return outputs.first { $0["name"] as? String == "embedding" }?["data"] as? [Double] ?? []
        }
        let largest = try await server.client.post("/v1/models/\(Self.faces.rawValue)/embed?faces=largest", photo)
        let expected = ((largest.json["faces"] as? [[String: Any]])?.first?["embedding"] as? [Double]) ?? []
        let detected = try await infer(["detect": true])
        #expect(detected.count == 512 && zip(detected, expected).allSatisfy { abs($0 - $1) <= 1e-6 })
        let whole = try await infer([:])
        #expect(whole.count == 512 && whole != detected)
    }

    @Test func badInputGetsOneLine() async throws {
        let server = try Self.server()
        try await server.waitUntilReady()
        let photo = try Data(contentsOf: Self.photo("t1.jpg"))
        let cases: [(String, Data, Int, String)] = [
            ("/v1/faces/detect", Data("not an image".utf8), 400, "not a JPEG or PNG image"),
            ("/v1/faces/detect", photo.prefix(photo.count / 3), 400, "JPEG"),
            ("/v1/models/\(Self.faces.rawValue)/embed?faces=some", photo, 400, "faces must be all or largest"),
        ]
        for (path, body, status, message) in cases {
            let reply = try await server.client.post(path, body)
            #expect(reply.status == status && (reply.error ?? "").contains(message), "\(path): \(reply.error ?? "")")
            #expect(!(reply.error ?? "\n").contains("\n"))
        }
        let none = try await server.client.post("/v1/faces/detect", try Data(contentsOf: Self.photo("coffee.jpg")))
        #expect(none.status == 200 && (none.json["faces"] as? [Any])?.isEmpty == true)
    }

    @Test func withoutMTCNNTheFaceRoutesSaySo() async throws {
        let server = try ServerProcess(["--model", Self.faces.rawValue, "--weights",
                                        try References.weights(Self.faces).path],
                                       environment: ["INCEPTION_VENV": "/nowhere", "HOME": "/nowhere"])
        try await server.waitUntilReady()
        let reply = try await server.client.post("/v1/faces/detect", try Data(contentsOf: Self.photo("t1.jpg")))
        #expect(reply.status == 404 && (reply.error ?? "").contains("--detector-weights"), "\(reply.error ?? "")")
    }
}
