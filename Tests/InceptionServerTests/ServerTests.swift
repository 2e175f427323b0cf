import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Inception
import InceptionEngine
import InceptionIO
import InceptionServer
import InceptionReferences
import InceptionTestSupport
import Testing


@Suite(.serialized) struct ServerTests {
    static let photos = ["chelsea_baseline.jpg", "coffee_progressive.jpg", "rocket.jpg", "motorcycle_rgba.png",
                         "chelsea_palette.png",
                         "astronaut_gray.jpg", "chelsea_rgb.png", "coffee_gray.png"]

    static func photo(_ name: String) throws -> Data { try Data(contentsOf: try Photos.imageURL(name)) }

    /// classify and embed answer exactly what the library answers for the same image (bitwise: the JSON carries
    /// each float exactly), raw or multipart; the model list and health endpoints describe the models.
    @Test func endpointsAnswerWhatTheLibraryAnswers() async throws {
        let v4 = try References.model(.inceptionV4), face = try References.model(.inceptionResNetV1FaceNet)
        try await TestServer.with([.loaded(v4), .loaded(face)]) { server in
            #expect(try await server.get("/health").json["status"] as? String == "ok")
            #expect(try await server.get("/ready").json["ready"] as? Bool == true)
            let models = try await server.get("/v1/models").json["models"] as! [[String: Any]]
            #expect(models.map { $0["name"] as! String } == ["inception_v4", "inception_resnet_v1_facenet"])
            #expect(models[0]["input_size"] as? Int == 299 && models[0]["labels"] as? String == "imagenet-1k")
            // The face model's classes are its logits' (the checkpoint's classifier), not its 512-wide embedding.
            #expect(face.primaryOutput == "embedding" && face.width(of: "embedding") == 512)
            #expect(models[1]["input_size"] as? Int == 160 && models[1]["classes"] as? Int == References.faceNetClasses)
            #expect(models[1]["labels"] as? String == "class index" && face.classes == References.faceNetClasses)
            let preprocessing = models[0]["preprocessing"] as! [String: Any]
            #expect(preprocessing["resize_short_side"] as? Int == 341
                    && preprocessing["interpolation"] as? String == "bicubic")

            let bytes = try Self.photo("chelsea_baseline.jpg")
            let image = try RGBImage(decoding: bytes)
            let expected = try v4.classify([image], top: 3)[0]
            for (body, type) in [(bytes, nil), multipartBody(bytes)] as [(Data, String?)] {
                let reply = try await server.post("/v1/models/inception_v4/classify?top=3", body, contentType: type)
                #expect(reply.status == 200 && reply.headers["content-type"] == "application/json")
                let predictions = reply.json["predictions"] as! [[String: Any]]
                #expect(predictions.map { $0["index"] as! Int } == expected.map(\.index))
                #expect(predictions.map { $0["label"] as! String } == expected.map(\.label))
                #expect(predictions.map { $0["wordnet_id"] as? String } == expected.map(\.wordNetID))
                #expect(predictions.map { Float($0["probability"] as! Double) } == expected.map(\.probability))
            }
            let defaultTop = try await server.post("/v1/models/inception_v4/classify", bytes)
            #expect((defaultTop.json["predictions"] as! [Any]).count == 5)

            let embedded = try await server.post("/v1/models/inception_resnet_v1_facenet/embed", bytes)
            #expect(embedded.json["output"] as? String == "embedding" && embedded.json["dimension"] as? Int == 512)
            #expect((embedded.json["embedding"] as! [Double]).map(Float.init) == (try face.embed([image])).scalars)
        }
    }

    /// Requests that arrive together run as one batch, and every answer is bitwise the unbatched one.
    @Test func batchedAnswersEqualUnbatchedOnes() async throws {
        let face = try References.model(.inceptionResNetV1FaceNet)
        try await TestServer.with([.loaded(face)], configure: { $0.limits = .init(maxBatch: 4,
            maxDelay: .milliseconds(400), maxQueue: 64) }) { server in
            let images = try Self.photos.map { try Self.photo($0) }
            let replies = try await withThrowingTaskGroup(of: (Int, TestServer.Reply).self) { group in
                for (i, bytes) in images.enumerated() {
                    group.addTask { (i, try await server.post("/v1/models/inception_resnet_v1_facenet/embed", bytes)) }
                }
                var replies = [TestServer.Reply?](repeating: nil, count: images.count)
                for try await (i, reply) in group { replies[i] = reply }
                return replies.map { $0! }
            }
            for (bytes, reply) in zip(images, replies) {
                #expect(reply.status == 200)
                let alone = try face.embed([try RGBImage(decoding: bytes)]).scalars
                #expect((reply.json["embedding"] as! [Double]).map(Float.init) == alone)
            }
            // Eight requests at once, at most four per batch: two to four batches (a first request may run alone
            // if it is decoded before the others are announced), not eight.
            let metrics = String(decoding: try await server.get("/metrics").body, as: UTF8.self)
            let key = "inception_batch_size_count{model=\"inception_resnet_v1_facenet\"}"
            let count = metrics.split(separator: "\n").first { $0.hasPrefix(key) }
            let batches = count.flatMap { Double($0.split(separator: " ").last!) } ?? 0
            #expect((2...4).contains(batches), "\(metrics)")
        }
    }

    /// Bad requests get 4xx with the one-line message the CLI prints, and the server goes on answering.
    @Test func badRequestsGetClearErrors() async throws {
        let face = try References.model(.inceptionResNetV1FaceNet)
        try await TestServer.with([.loaded(face)], configure: { $0.maxBodyBytes = 100_000 }) { server in
            let path = "/v1/models/inception_resnet_v1_facenet/classify"
            let jpeg = try Self.photo("chelsea_baseline.jpg")
            // The CLI's line for the same bytes in a file is "error: FILE: MESSAGE".
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("srv-\(UUID())")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let truncated = jpeg.prefix(jpeg.count / 3)
            for (body, expected) in [(Data("hello".utf8), "not a JPEG or PNG image"),
                                     (Data(), "the image is empty (0 bytes)"),
                                     (truncated, nil)] as [(Data, String?)] {
                let reply = try await server.post(path, body)
                #expect(reply.status == 400)
                let file = dir.appendingPathComponent("bad.jpg")
                try body.write(to: file)
                let cli = try runInception(["classify", "--model", "inception_resnet_v1_facenet", "--weights",
                                            try References.weights(.inceptionResNetV1FaceNet).path, file.path])
                #expect(cli.status == 1)
                #expect(cli.stderr == "error: \(file.path): \(reply.error ?? "?")\n")
                if let expected { #expect(reply.error == expected) }
            }
            let unknown = try await server.post("/v1/models/inception_v5/classify", jpeg)
            #expect(unknown.status == 404
                    && unknown.error == "unknown model 'inception_v5'; this server has inception_resnet_v1_facenet")
            let nowhere = try await server.get("/v2/anything")
            #expect(nowhere.status == 404 && nowhere.error != nil)
            for top in ["0", "x"] {
                let reply = try await server.post(path + "?top=\(top)", jpeg)
                #expect(reply.status == 400 && reply.error == "top must be a whole number of at least 1, not '\(top)'")
            }
            // More than the model has: all of them, as the command line's --top.
            let all = try await server.post(path + "?top=\(References.faceNetClasses + 1)", jpeg)
            #expect(all.status == 200 && (all.json["predictions"] as? [Any])?.count == References.faceNetClasses)
            let big = try await server.post(path, Data(count: 100_001))
            #expect(big.status == 413 && big.error == "the request body is larger than the limit of 100000 bytes")
            let (multipart, type) = multipartBody(Data("bytes".utf8), name: "other")
            let noFile = try await server.post(path, multipart.replacingOccurrences(of: "filename=\"photo.jpg\"",
                with: ""), contentType: type)
            #expect(noFile.status == 400
                    && noFile.error == "the multipart body has no part named 'image' or 'file' and no file part")
            let unclosed = try await server.post(path, multipartBody(jpeg).0.dropLast(30), contentType: type)
            #expect(unclosed.status == 400
                    && unclosed.error == "malformed multipart body: part 2 is not closed by a boundary")
            let noBoundary = try await server.post(path, jpeg, contentType: "multipart/form-data")
            #expect(noBoundary.status == 400
                    && noBoundary.error == "multipart/form-data without a valid boundary parameter")
            // Still serving.
            #expect(try await server.post(path, jpeg).status == 200)
            let metrics = String(decoding: try await server.get("/metrics").body, as: UTF8.self)
            let classify = "inception_http_requests_total{endpoint=\"/v1/models/{model}/classify\""
            let face = ",model=\"inception_resnet_v1_facenet\""
            #expect(metrics.contains(classify + face + ",method=\"POST\",status=\"400\"} 8"))
            #expect(metrics.contains(classify + ",model=\"\",method=\"POST\",status=\"404\"} 1"))
        }
    }

    /// Past `maxQueue` admitted requests (being read, decoded or waiting), 503 with Retry-After; everything
    /// accepted is answered.
    @Test func aFullQueueAnswers503WithRetryAfter() async throws {
        let v4 = try References.model(.inceptionV4)  // ≈ 0.2 s a forward pass: the requests pile up behind it
        try await TestServer.with([.loaded(v4)], configure: { $0.limits = .init(maxBatch: 1, maxDelay: .zero,
            maxQueue: 2) }) { server in
            let bytes = try Self.photo("rocket.jpg")
            let replies = try await withThrowingTaskGroup(of: TestServer.Reply.self) { group in
                for _ in 0..<6 { group.addTask { try await server.post("/v1/models/inception_v4/classify", bytes) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let refused = replies.filter { $0.status == 503 }
            #expect(replies.allSatisfy { $0.status == 200 || $0.status == 503 })
            #expect(replies.count - refused.count >= 2 && refused.count >= 1, "\(replies.map(\.status))")
            for reply in refused {
                #expect(Int(reply.headers["retry-after"] ?? "") ?? 0 >= 1)
                #expect(reply.error == "the server is busy: 2 requests are already waiting for this model")
            }
            let metrics = String(decoding: try await server.get("/metrics").body, as: UTF8.self)
            #expect(metrics.contains("inception_refused_requests_total{model=\"inception_v4\"} \(refused.count)"))
            #expect(metrics.contains("inception_queue_depth{model=\"inception_v4\"} 0.0"))
        }
    }

    /// The port opens before the weights are loaded: /health answers, /ready and the model say 503 until then.
    @Test func readyOnlyOnceTheWeightsAreLoaded() async throws {
        let face = try References.model(.inceptionResNetV1FaceNet)
        let gate = DispatchSemaphore(value: 0)
        let slow = InferenceServer.ModelSource(.inceptionResNetV1FaceNet) { gate.wait(); return face }
        defer { gate.signal() }  // never leave the loader waiting
        try await TestServer.with([slow], waitUntilReady: false) { server in
            #expect(try await server.get("/health").status == 200)
            let ready = try await server.get("/ready")
            #expect(ready.status == 503 && ready.json["loading"] as? [String] == ["inception_resnet_v1_facenet"])
            let early = try await server.post("/v1/models/inception_resnet_v1_facenet/embed",
                                              try Self.photo("rocket.jpg"))
            #expect(early.status == 503 && early.headers["retry-after"] == "1"
                    && early.error == "model inception_resnet_v1_facenet is still loading")
            gate.signal()
            while try await server.get("/ready").status != 200 { try await Task.sleep(for: .milliseconds(20)) }
            #expect(try await server.post("/v1/models/inception_resnet_v1_facenet/embed",
                                          try Self.photo("rocket.jpg")).status == 200)
        }
    }

    /// A shutdown while weights load waits for the model being loaded, and loads no other.
    @Test func shutdownDuringLoadingSkipsTheRemainingModels() async throws {
        let face = try References.model(.inceptionResNetV1FaceNet)
        let gate = DispatchSemaphore(value: 0)
        let secondLoaded = Locked(false)
        let first = InferenceServer.ModelSource(.inceptionResNetV1FaceNet) { gate.wait(); return face }
        let second = InferenceServer.ModelSource(.inceptionV4) {
            secondLoaded.withLock { $0 = true }
            return try References.model(.inceptionV4)
        }
        defer { gate.signal() }
        try await TestServer.with([first, second], waitUntilReady: false) { server in
            #expect(try await server.get("/ready").status == 503)
            let stopping = Task { await server.server.shutdown() }
            // The HTTP server stops first, then the loader is told: wait for the first (up to 20 s, under the
            // parallel suite's load), then give the second a moment.
            for _ in 0..<1000 where (try? await server.get("/ready")) != nil {
                try await Task.sleep(for: .milliseconds(20))
            }
            try await Task.sleep(for: .milliseconds(300))
            gate.signal()
            await stopping.value
        }
        #expect(secondLoaded.withLock { $0 } == false)
    }

    /// Weights that cannot be loaded stop the server with the loader's one-line error (exit 1 from the CLI).
    @Test func unloadableWeightsStopTheServer() async throws {
        let cli = try runInception(["serve", "--model", "inception_v4", "--weights", "/nonexistent/w.safetensors",
                                    "--port", "0"])
        #expect(cli.status == 1)
        #expect(cli.stderr.hasPrefix("error: ") && cli.stderr.contains("/nonexistent/w.safetensors")
                && cli.stderr.split(separator: "\n").count == 1,
                "\(cli.stderr)")
        let mismatch = try runInception(["serve", "--model", "inception_v4", "--model", "inception_resnet_v2",
                                         "--weights", "a"])
        #expect(mismatch.status != 0
                && mismatch.stderr.contains("give one --weights per --model (2 models, 1 weights)"))
    }

    /// `serve --precision int8` with a quantised checkpoint answers what the library's int8 model answers.
    @Test func servesAtInt8() async throws {
        let folder = try scratchDirectory("serve-int8")
        defer { try? FileManager.default.removeItem(at: folder) }
        let weights = try References.quantized(.inceptionResNetV1FaceNet, into: folder)
        let launched = try ServerProcess(["--weights", weights.path, "--precision", "int8"])
        try await launched.waitUntilReady()
        let server = launched.client
        let model = try InceptionModel(.inceptionResNetV1FaceNet, weights: weights, precision: .int8)
        let bytes = try Self.photo("coffee_progressive.jpg")
        let reply = try await server.post("/v1/models/inception_resnet_v1_facenet/embed", bytes)
        #expect(reply.status == 200)
        let image = try RGBImage(decoding: bytes)
        #expect((reply.json["embedding"] as? [Double])?.map(Float.init) == (try model.embed([image])).scalars)
    }

    /// SIGTERM: the listening socket closes, requests already received are answered, the process exits 0.
    @Test func sigtermFinishesInFlightRequests() async throws {
        let launched = try ServerProcess([
            "--model", "inception_v4", "--weights", try References.weights(.inceptionV4).path, "--max-batch", "1",
        ])
        try await launched.waitUntilReady()
        let (process, server) = (launched.process, launched.client)
        let bytes = try Self.photo("coffee_progressive.jpg")
        async let replies = withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<3 { group.addTask { try await server.post("/v1/models/inception_v4/classify", bytes).status } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        // The signal comes once the server has all three (one forward pass at a time: they are still running).
        while !String(decoding: try await server.get("/metrics").body, as: UTF8.self)
            .contains("inception_requests_in_progress{model=\"inception_v4\"} 3.0") {
            try await Task.sleep(for: .milliseconds(5))
        }
        kill(process.processIdentifier, SIGTERM)
        #expect(try await replies == [200, 200, 200])
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        await #expect(throws: (any Error).self) { try await server.get("/health") }
    }
}

/// The multipart parser on its own: well-formed bodies, and every kind of damage gives an error, never a crash.
@Suite struct MultipartTests {
    @Test func findsTheFilePart() throws {
        let file = Data((0..<300).map { UInt8($0 % 256) }) + Data("\r\n--XyZ".utf8)  // a near-boundary inside the file
        let (body, type) = multipartBody(file)
        let boundary = try #require(try Multipart.boundary(contentType: type))
        let parts = try Multipart.parts(of: body, boundary: boundary)
        #expect(parts.map(\.name) == ["note", "image"])
        #expect(parts[0].body == Data("hello".utf8) && parts[1].filename == "photo.jpg"
                && parts[1].contentType == "image/jpeg")
        #expect(Multipart.upload(in: parts)?.body == file)
        #expect(try Multipart.boundary(contentType: "image/jpeg") == nil)
        #expect(throws: Multipart.Error.noBoundary) {
            try Multipart.boundary(contentType: "multipart/form-data; boundary=")
        }
        #expect(throws: Multipart.Error.noBoundary) {
            try Multipart.boundary(contentType: "multipart/form-data; boundary=\(String(repeating: "b", count: 71))")
        }
    }

    @Test func damagedBodiesThrow() throws {
        let (body, _) = multipartBody(Data("JPEGDATA".utf8))
        #expect(throws: Multipart.Error.malformed("no boundary line")) {
            try Multipart.parts(of: Data("no parts".utf8), boundary: "XyZ-boundary-42")
        }
        #expect(throws: Multipart.Error.malformed("no boundary line")) {
            try Multipart.parts(of: Data("x--XyZ-boundary-42".utf8), boundary: "XyZ-boundary-42")
        }
        #expect(throws: Multipart.Error.malformed("boundary line not followed by a line break")) {
            try Multipart.parts(of: Data("--XyZ-boundary-42junk".utf8), boundary: "XyZ-boundary-42")
        }
        #expect(throws: Multipart.Error.malformed("part 1 has no blank line after its headers")) {
            try Multipart.parts(of: Data("--b\r\nContent-Type: x\r\n--b--".utf8), boundary: "b")
        }
        #expect(throws: Multipart.Error.malformed("part 1 has a header line without a colon")) {
            try Multipart.parts(of: Data("--b\r\nnonsense\r\n\r\nx\r\n--b--".utf8), boundary: "b")
        }
        // Every prefix of a valid body parses or throws a Multipart.Error.
        for n in 0...body.count {
            do { _ = try Multipart.parts(of: body.prefix(n), boundary: "XyZ-boundary-42") } catch is Multipart.Error {}
        }
    }
}

