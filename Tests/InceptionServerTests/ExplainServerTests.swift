import Foundation
import Inception
import InceptionIO
import InceptionReferences
import InceptionTestSupport
import Testing

/// The server's explanations and its page: `/explain` answers `inception explain`'s bytes, `/compare` `inception
/// compare`'s distance and overlays, every refusal is one line, and the page at `/` works in headless Chromium.
@Suite(.serialized) struct ExplainServerTests {
    static let classifier = ModelName.inceptionV4, faces = ModelName.inceptionResNetV1FaceNet

    static func server(_ extra: [String] = []) throws -> ServerProcess {
        try ServerProcess(["--model", classifier.rawValue, "--weights", try References.weights(classifier).path,
                           "--model", faces.rawValue, "--weights", try References.weights(faces).path] + extra)
    }

    /// Two real face photos: crops of the astronaut, one mirrored.
    static func facePhotos(in folder: URL) throws -> [URL] {
        let astronaut = try RGBImage(contentsOf: try Photos.imageURL("astronaut_gray.jpg"))
        let a = astronaut.cropped(left: 120, top: 0, width: 220, height: 260)
        let b = astronaut.cropped(left: 140, top: 20, width: 160, height: 180)
        var pixels = [UInt8](repeating: 0, count: b.pixels.count)
        for y in 0..<b.height {
            for x in 0..<b.width {
                for c in 0..<3 { pixels[(y * b.width + x) * 3 + c] = b.pixels[(y * b.width + b.width - 1 - x) * 3 + c] }
            }
        }
        let mirrored = RGBImage(width: b.width, height: b.height, pixels: pixels)
        return try [("face_a.png", a), ("face_b.png", mirrored)].map { name, image in
            let url = folder.appendingPathComponent(name)
            try image.pngData().write(to: url)
            return url
        }
    }

    @Test func explainAnswersTheCommandLinesBytes() async throws {
        let server = try Self.server()
        try await server.waitUntilReady()
        let photo = try Photos.imageURL("chelsea_baseline.jpg")
        let scratch = try scratchDirectory("explain-server")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let png = try await server.client.post("/v1/models/inception_v4/explain?class=285&method=layercam",
                                               try Data(contentsOf: photo))
        #expect(png.status == 200 && png.headers["content-type"] == "image/png")
        let out = scratch.appendingPathComponent("cli.png")
        let cli = try runInception(["explain", "--weights", try References.weights(Self.classifier).path, "--class",
                                    "285", "--method", "layercam", "--output", out.path, photo.path])
        #expect(cli.status == 0, "\(cli.stderr)")
        #expect(try Data(contentsOf: out) == png.body)
        let overlay = try RGBImage(decoding: png.body), original = try RGBImage(contentsOf: photo)
        #expect(overlay.width == original.width && overlay.height == original.height)
        let json = try await server.client.post("/v1/models/inception_v4/explain?method=gradcam++",
                                                try Data(contentsOf: photo), headers: ["Accept": "application/json"])
        let map = (json.json["map"] as? [String: Any])?["values"] as? [Double] ?? []
        let cliJSON = try runInception(["explain", "--weights", try References.weights(Self.classifier).path,
                                        "--method", "gradcam++", "--json", photo.path])
        let records = try JSONSerialization.jsonObject(with: Data(cliJSON.stdout.utf8)) as? [[String: Any]]
        let cliMap = ((records?.first?["map"] as? [String: Any])?["values"] as? [Double]) ?? [1]
        #expect(map.count == 299 * 299 && map == cliMap)
        #expect((json.json["target"] as? [String: Any])?["class"] as? Int == records?.first.flatMap {
            ($0["target"] as? [String: Any])?["class"] as? Int })
        let metrics = String(decoding: try await server.client.get("/metrics").body, as: UTF8.self)
        #expect(metrics.contains("inception_http_requests_total{endpoint=\"/v1/models/{model}/explain\""))
    }

    /// `/compare`'s distance and overlays are `inception compare --explain`'s.
    @Test func compareAnswersTheCommandLinesOverlays() async throws {
        let server = try Self.server()
        try await server.waitUntilReady()
        let scratch = try scratchDirectory("compare-server")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let faces = try Self.facePhotos(in: scratch)
        let boundary = "face-boundary-7"
        var body = Data()
        for (name, url) in zip(["a", "b"], faces) {
            let header = "Content-Disposition: form-data; name=\"\(name)\"; filename=\"\(name).png\""
            body += Data("--\(boundary)\r\n\(header)\r\n\r\n".utf8)
            body += try Data(contentsOf: url) + Data("\r\n".utf8)
        }
        body += Data("--\(boundary)--\r\n".utf8)
        let reply = try await server.client.post("/v1/models/inception_resnet_v1_facenet/compare?threshold=0.9", body,
                                                 contentType: "multipart/form-data; boundary=\(boundary)")
        #expect(reply.status == 200, "\(reply.error ?? "")")
        let folder = scratch.appendingPathComponent("overlays")
        let cli = try runInception(["compare", "--no-detect", "--weights", try References.weights(Self.faces).path,
                                    "--json", "--explain", folder.path, faces[0].path, faces[1].path])
        #expect(cli.status == 0, "\(cli.stderr)")
        let printed = try JSONSerialization.jsonObject(with: Data(cli.stdout.utf8)) as? [String: Any] ?? [:]
        #expect(printed["distance"] as? Double == reply.json["distance"] as? Double)
        #expect(reply.json["threshold"] as? Double == 0.9)
        let overlays = (reply.json["overlays"] as? [String] ?? []).compactMap { Data(base64Encoded: $0) }
        #expect(overlays.count == 2)
        for (overlay, name) in zip(overlays, ["face_a.png", "face_b.png"]) {
            #expect(try Data(contentsOf: folder.appendingPathComponent(name)) == overlay, "\(name)")
        }
    }

    @Test func refusalsAreOneLine() async throws {
        let server = try Self.server(["--no-ui"])
        try await server.waitUntilReady()
        let photo = try Data(contentsOf: try Photos.imageURL("rocket.jpg"))
        let cases: [(String, Data, String)] = [
            ("/v1/models/inception_v4/explain", Data("not an image".utf8), "not a JPEG or PNG image"),
            ("/v1/models/inception_v4/explain?class=1000", photo,
             "class must be a class index from 0 to 999, not '1000'"),
            ("/v1/models/inception_v4/explain?method=scorecam", photo,
             "method must be one of gradcam, gradcam++, xgradcam, hirescam, layercam, eigencam, not 'scorecam'"),
            ("/v1/models/inception_resnet_v1_facenet/compare", photo,
             "send the two faces as multipart/form-data, one file part each"),
        ]
        for (path, body, message) in cases {
            let reply = try await server.client.post(path, body)
            #expect(reply.status == 400 && reply.error == message, "\(path): \(reply.status) \(reply.error ?? "")")
        }
        #expect(try await server.client.get("/").status == 404)
    }

    /// The issue's checks in a real browser (scripts/browser_check.py): Debian's chromium and chromedriver, which
    /// `scripts/install_dependencies.sh --tests` installs.
    @Test func thePageWorksInHeadlessChromium() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium"),
              FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver") else {
            print("skipped: no /usr/bin/chromium and /usr/bin/chromedriver (Debian's chromium, chromium-driver)")
            return
        }
        let server = try Self.server()
        try await server.waitUntilReady()
        let page = try await server.client.get("/")
        #expect(page.status == 200 && page.headers["content-security-policy"]?.hasPrefix("default-src 'self'") == true)
        let scratch = try scratchDirectory("browser")
        let faces = try Self.facePhotos(in: scratch)
        let text = scratch.appendingPathComponent("notes.txt")
        try Data("not a photo\n".utf8).write(to: text)
        let arguments = [repositoryRoot.appendingPathComponent("scripts/browser_check.py").path,
                         "--url", "http://127.0.0.1:\(server.port)/", "--inception", inceptionExecutable().path,
                         "--classifier", Self.classifier.rawValue, try References.weights(Self.classifier).path,
                         "--faces", Self.faces.rawValue, try References.weights(Self.faces).path,
                         "--shots", scratch.appendingPathComponent("screenshots").path,
                         "--photo", try Photos.imageURL("chelsea_baseline.jpg").path,
                         "--face", faces[0].path, "--face", faces[1].path, "--text", text.path]
        let result = try run(venvPython(), arguments)
        print(result.stdout)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.hasSuffix("browser_check: every check passed\n"))
    }
}
