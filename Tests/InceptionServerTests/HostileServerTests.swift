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

/// The attacks of issue #16 against a running server, over real sockets: each gets a clean answer within a stated
/// time while the server keeps answering others (docs/reliability.md, "Hostile input").
@Suite(.serialized) struct HostileServerTests {
    static let face = "/v1/models/inception_resnet_v1_facenet"

    /// How long `body` takes.
    static func timed<T>(_ body: () async throws -> T) async rethrows -> (T, Duration) {
        let start = ContinuousClock.now
        let result = try await body()
        return (result, .now - start)
    }

    /// 1 × 100 000 and 100 000 × 1 PNGs (a few hundred bytes) once asked for 35 GB; now they are classified at once.
    /// The image is one colour, so the model sees exactly that colour whatever the resize: the answer must equal
    /// the answer for a photo-sized image of the same colour. "At once" is the decoding and preprocessing's CPU time
    /// on its thread (0.2 s measured; bound 10 s), not the round trip's wall time: the server decodes below the
    /// forward passes' priority, and the suite's parallel load once held a round trip for 252 s.
    @Test func thinImagesAreClassifiedAtOnce() async throws {
        let model = try References.model(.inceptionResNetV1FaceNet)
        let colour: [UInt8] = [10, 200, 30]
        let plain = RGBImage(width: 200, height: 200, pixels: [UInt8]((0..<40_000).flatMap { _ in colour }))
        let expected = try model.embed([plain]).scalars
        let names = ["thin_1x100000.png", "thin_100000x1.png", "thin_1x3000.png"]
        try await TestServer.with([.loaded(model)]) { server in
            for name in names {
                let reply = try await server.post(Self.face + "/embed", try References.attack(name))
                #expect(reply.status == 200, "\(name): \(reply.error ?? "")")
                #expect((reply.json["embedding"] as? [Double])?.map(Float.init) == expected, "\(name)")
            }
        }
        for name in names {
            let data = try References.attack(name)
            let cpu = try Self.threadCPUTime {
                _ = model.name.spec.preprocessing.apply(try RGBImage(decoding: data), inputSize: model.inputSize)
            }
            // Before: SIGABRT asking for 35 GB.
            #expect(cpu < 10, "\(name): \(cpu) s of CPU")
        }
    }

    /// The CPU seconds `body` takes on the calling thread (not the time it waits for a core).
    static func threadCPUTime(_ body: () throws -> Void) rethrows -> Double {
        func now() -> Double {
            var t = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
            return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
        }
        let start = now()
        try body()
        return now() - start
    }

    /// A 16 MB body of empty parts (once 28 minutes of parsing) is refused by the parts cap, and a body of
    /// near-boundaries in one part parses in linear time. The parser is timed alone (10 s bounds; 0.1 s measured);
    /// the server's round trip of 16 MB has a bound of 2 minutes only, as the whole suite runs beside it in this
    /// process (26 s seen in CI).
    @Test func multipartBombsAreCheap() async throws {
        let model = try References.model(.inceptionResNetV1FaceNet)
        try await TestServer.with([.loaded(model)]) { server in
            let bomb = Data(String(repeating: "--B\r\n\r\n\r\n", count: 16_000_000 / 9).utf8)
            let (reply, took) = try await Self.timed {
                try await server.post(Self.face + "/embed", bomb, contentType: "multipart/form-data; boundary=B")
            }
            #expect(reply.status == 400 && reply.error == "malformed multipart body: more than 64 parts")
            #expect(took < .seconds(120), "\(took)")
            let (_, parsing) = await Self.timed { (try? Multipart.parts(of: bomb, boundary: "B")) == nil }
            #expect(parsing < .seconds(10), "\(parsing)")
        }
        var near = Data("--XyZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n".utf8)
        near += Data(String(repeating: "\r\n--Xy", count: 2_000_000).utf8) + Data("\r\n--XyZ--\r\n".utf8)
        let (parts, took) = try await Self.timed { try Multipart.parts(of: near, boundary: "XyZ") }
        #expect(parts.count == 1 && parts[0].body.count == 12_000_000 && took < .seconds(10), "\(took)")
    }

    /// Waits until the server counts `expected` requests in progress for the face model (counted, then admitted
    /// and reserved without a pause): a probe sent before a stalled upload is counted would take its place instead.
    static func waitUntilCounted(_ server: TestServer, _ expected: Int) async throws {
        let counted = "inception_requests_in_progress{model=\"inception_resnet_v1_facenet\"} \(expected).0"
        for _ in 0..<2400 where !String(decoding: try await server.get("/metrics").body, as: UTF8.self)
            .contains(counted) {
            try await Task.sleep(for: .milliseconds(25))
        }
    }

    static func stalledUpload(_ server: TestServer) throws -> RawConnection {
        let stalled = try RawConnection(port: server.base.port!)
        #expect(stalled.send("POST \(face)/embed HTTP/1.1\r\nHost: x\r\nContent-Length: 900000\r\n\r\nabc"))
        return stalled
    }

    /// Past --max-queue requests admitted (being read, decoded or waiting), 503 before the body is read; past the
    /// bytes-in-flight budget, 503 too. A stalled upload holds its place until its client goes or the body timeout
    /// closes it. Each part is ordered by what the server reports, not by sleeps: fresh-clone CI runs, the whole
    /// suite in parallel around this test, lost every race that a short body timeout or a pause left open.
    @Test func admissionComesBeforeTheBody() async throws {
        let model = try References.model(.inceptionResNetV1FaceNet)
        let photo = try ServerTests.photo("rocket.jpg")
        /// Posts the photo until it is answered 200 (the place is given back a moment after a close under load).
        func placeIsFree(_ server: TestServer) async throws -> Bool {
            for _ in 0..<200 {
                if try await server.post(Self.face + "/embed", photo).status == 200 { return true }
                try await Task.sleep(for: .milliseconds(50))
            }
            return false
        }
        try await TestServer.with([.loaded(model)], configure: {
            $0.limits = .init(maxBatch: 1, maxDelay: .zero, maxQueue: 1)
            $0.timeouts.body = .seconds(600)  // the stalled upload holds its place for the whole of this part
        }) { server in
            let stalled = try Self.stalledUpload(server)
            try await Self.waitUntilCounted(server, 1)
            let full = try await server.post(Self.face + "/embed", Data(count: 10))
            #expect(full.status == 503 && full.headers["retry-after"] != nil
                    && full.error == "the server is busy: 1 requests are already waiting for this model",
                    "\(full.status): \(full.error ?? "")")
            stalled.shutdownWrite()  // the client goes: its place is given back
            #expect(try await placeIsFree(server))
        }
        try await TestServer.with([.loaded(model)], configure: {
            $0.limits = .init(maxBatch: 1, maxDelay: .zero, maxQueue: 1)
            $0.timeouts.body = .seconds(1)
        }) { server in
            let stalled = try Self.stalledUpload(server)
            let (closed, took) = await Self.timed { stalled.receive(timeout: .seconds(60)) }
            // 1 s measured alone; the bound is loose for a machine running the whole suite beside this test.
            #expect(closed.closed && took < .seconds(30), "stalled upload closed after \(took)")
            #expect(try await placeIsFree(server))
        }
        try await TestServer.with([.loaded(model)], configure: {
            $0.maxBytesInFlight = 1 << 20
            $0.maxBodyBytes = 1 << 20
            $0.timeouts.body = .seconds(600)
        }) { server in
            let stalled = try Self.stalledUpload(server)
            try await Self.waitUntilCounted(server, 1)
            let over = try await server.post(Self.face + "/embed", Data(count: 200_000))
            #expect(over.status == 503
                    && over.error == "the server is busy: it is already receiving 1048576 bytes of requests")
            stalled.shutdownWrite()
        }
    }

    /// A client that disconnects before its forward pass is dropped from the queue and counted as 499, and `top`
    /// out of range is refused before any work.
    @Test func goneClientsAreDroppedAndCounted() async throws {
        let v4 = try References.model(.inceptionV4)  // ≈ 0.2 s a forward pass: the others wait behind the first
        let photo = try ServerTests.photo("rocket.jpg")
        let limits = Batcher.Limits(maxBatch: 1, maxDelay: .zero, maxQueue: 16)
        try await TestServer.with([.loaded(v4)], configure: { $0.limits = limits }) { server in
            let path = "/v1/models/inception_v4/classify"
            let bad = try await server.post(path + "?top=0", photo)
            #expect(bad.status == 400)
            async let first = server.post(path, photo)
            try await Task.sleep(for: .milliseconds(30))
            var gone: [RawConnection] = []
            for _ in 0..<3 {
                let connection = try RawConnection(port: server.base.port!)
                var request = Data("POST \(path) HTTP/1.1\r\nHost: x\r\nContent-Length: \(photo.count)\r\n\r\n".utf8)
                request += photo
                #expect(connection.send(request))
                connection.shutdownWrite()
                gone.append(connection)
            }
            #expect(try await first.status == 200)
            // Each gone request is answered (unread) as soon as its turn comes; the suite around may slow that.
            var metrics = ""
            for _ in 0..<200 where !metrics.contains("status=\"499\"} 3") {
                try await Task.sleep(for: .milliseconds(50))
                metrics = String(decoding: try await server.get("/metrics").body, as: UTF8.self)
            }
            #expect(metrics.contains("status=\"499\"} 3"), "\(metrics)")
            // One forward pass for the first request (the test's own `top=0` ran none), at most one more for a
            // request taken before its client's close was seen.
            let line = metrics.split(separator: "\n")
                .first { $0.hasPrefix("inception_batch_size_count{model=\"inception_v4\"}") }
            let batches = line.flatMap { Double($0.split(separator: " ").last!) } ?? -1
            #expect((1...2).contains(batches), "\(batches) forward passes")
        }
    }
}

/// The server as a separate process: resident memory under 100 concurrent 16 MB uploads, and SIGTERM's deadline.
@Suite(.serialized) struct HostileServerProcessTests {
    /// Bound on peak resident memory: idle + the bytes-in-flight budget (128 MiB) counted three times (the growing
    /// body buffer, its copy, a multipart part) + 64 MiB. It returns to within 64 MiB of idle afterwards.
    @Test func memoryIsBoundedUnderConcurrentUploads() async throws {
        let server = try ServerProcess(["--model", "inception_resnet_v1_facenet", "--random-weights", "1"])
        try await server.waitUntilReady()
        _ = try await server.client.post(HostileServerTests.face + "/embed", try ServerTests.photo("rocket.jpg"))
        let idle = residentMemory(pid: server.process.processIdentifier).now
        let body = Data(repeating: 0x41, count: 16 << 20)
        let port = server.port, path = HostileServerTests.face + "/embed"
        // A thread per client (blocking sockets): all hundred send at once.
        let statuses = Locked([Int?]())
        let done = DispatchGroup()
        for _ in 0..<100 {
            done.enter()
            Thread {
                defer { done.leave() }
                guard let connection = try? RawConnection(port: port) else {
                    return statuses.withLock { $0.append(nil) }
                }
                // Headers first: a refusal (503) comes before the body is read, as a client watching its socket sees.
                connection.send("POST \(path) HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.count)\r\n"
                                + "Connection: close\r\n\r\n")
                var answer = connection.receive(timeout: .milliseconds(300)).data
                if answer.isEmpty {
                    connection.send(body)
                    answer = connection.receive(timeout: .seconds(60)).data
                }
                let status = RawConnection.status(answer)
                statuses.withLock { $0.append(status) }
            }.start()
        }
        await withCheckedContinuation { continuation in done.notify(queue: .global()) { continuation.resume() } }
        let answered = statuses.withLock { $0 }
        #expect(answered.count == 100 && answered.allSatisfy { $0 == 400 || $0 == 503 }, "\(answered)")
        #expect(answered.contains(503) && answered.contains(400), "\(answered)")
        let peak = residentMemory(pid: server.process.processIdentifier).peak
        #expect(peak < idle + 3 * (128 << 20) + (64 << 20), "peak \(peak >> 20) MB, idle \(idle >> 20) MB")
        // The server trims its free memory a second after a burst: wait for that (30 s at most), not a fixed time.
        var after = residentMemory(pid: server.process.processIdentifier).now
        for _ in 0..<300 where after >= idle + (64 << 20) {
            try await Task.sleep(for: .milliseconds(100))
            after = residentMemory(pid: server.process.processIdentifier).now
        }
        #expect(after < idle + (64 << 20), "after \(after >> 20) MB, idle \(idle >> 20) MB")
    }

    /// Images past the server's pixel limit are refused from their header; a decode past the time limit is stopped.
    /// Meanwhile /health and a valid request are answered. The server is a process of its own, as in production (in
    /// the test process its handlers would share Swift's two cooperative threads with the rest of the suite). How
    /// fast they are answered is scripts/soak.py's to check (100 ms and 2× unloaded, on an otherwise idle machine):
    /// here the whole suite runs beside on two cores, where 1 s and then 10 s bounds failed in fresh-clone CI runs
    /// (17.7 s on a Zen 3), so the bound is 60 s: it catches a server that hangs, which is what this test is for.
    @Test func slowImagesDelayOnlyThemselves() async throws {
        let process = try ServerProcess(["--model", "inception_resnet_v1_facenet", "--random-weights", "1",
                                         "--decode-time-limit", "0.3"])
        try await process.waitUntilReady()
        let server = process.client, face = HostileServerTests.face
        let photo = try ServerTests.photo("chelsea_baseline.jpg")
        var unloaded: [Duration] = []
        for _ in 0..<3 {
            unloaded.append(try await HostileServerTests.timed { try await server.post(face + "/embed", photo) }.1)
        }
        let big = try await server.post(face + "/embed", try References.attack("zeros_13000.png"))
        #expect(big.status == 400 && big.error
                == "image of 13000×13000 pixels exceeds the limit of 25000000 pixels (a possible decompression bomb)")
        let slow = try References.attack("scans_1000.jpg")
        async let attacks = withThrowingTaskGroup(of: TestServer.Reply.self) { group in
            for _ in 0..<2 { group.addTask { try await server.post(face + "/embed", slow) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        try await Task.sleep(for: .milliseconds(50))  // the attacks' head start (each is in progress for 0.3 s)
        let (health, healthTook) = try await HostileServerTests.timed { try await server.get("/health") }
        let (valid, validTook) = try await HostileServerTests.timed { try await server.post(face + "/embed", photo) }
        #expect(health.status == 200 && healthTook < .seconds(60), "\(healthTook)")
        #expect(valid.status == 200 && validTook < unloaded.min()! * 2 + .seconds(60), "\(validTook) vs \(unloaded)")
        for reply in try await attacks {
            #expect(reply.status == 400 && reply.error == "decoding the JPEG took longer than the limit of 0.3 s")
        }
    }

    /// Idle, header and body deadlines each close their connection; hundreds of idle connections do not keep
    /// /health from answering (a server process of its own, and a loose bound, as above: 1100 idle connections once
    /// starved the server for 65 s).
    @Test func connectionDeadlines() async throws {
        let process = try ServerProcess(["--model", "inception_resnet_v1_facenet", "--random-weights", "1",
                                         "--idle-timeout", "0.5", "--header-timeout", "0.5", "--body-timeout", "0.5"])
        try await process.waitUntilReady()
        let (port, face) = (process.port, HostileServerTests.face)
        let idle = try RawConnection(port: port)
        let header = try RawConnection(port: port)
        #expect(header.send("POST \(face)/embed HTTP/1.1\r\nHost: x\r\n"))
        let body = try RawConnection(port: port)
        #expect(body.send("POST \(face)/embed HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n12345"))
        let crowd = try (0..<300).map { _ in try RawConnection(port: port) }
        let (health, took) = try await HostileServerTests.timed { try await process.client.get("/health") }
        #expect(health.status == 200 && took < .seconds(60), "\(took)")
        for (name, connection) in [("idle", idle), ("header", header), ("body", body)] {
            let (answer, waited) = await HostileServerTests.timed { connection.receive(timeout: .seconds(8)) }
            #expect(answer.closed && waited < .seconds(6), "\(name): closed \(answer.closed) after \(waited)")
        }
        #expect(crowd.allSatisfy { $0.receive(timeout: .milliseconds(500)).closed })
    }

    /// A port already in use, HTTP's or gRPC's, is named in one line (NIO's text named only the system call), exit 1.
    @Test func aPortInUseIsNamed() async throws {
        let first = try ServerProcess(["--model", "inception_resnet_v1_facenet", "--random-weights", "1"])
        let second = try runInception(["serve", "--model", "inception_resnet_v1_facenet", "--random-weights", "1",
                                       "--port", "\(first.port)"])
        #expect(second.status == 1 && second.stderr == "error: port \(first.port) on 127.0.0.1 is already in use\n",
                "\(second.stderr)")
        // The gRPC port alike: the HTTP side, already listening, stops with it.
        let third = try runInception(["serve", "--model", "inception_resnet_v1_facenet", "--random-weights", "1",
                                      "--port", "0", "--grpc-port", "\(first.port)"])
        #expect(third.status == 1 && third.stderr == "error: port \(first.port) on 127.0.0.1 is already in use\n",
                "\(third.stderr)")
    }

    /// SIGTERM with a client stalled mid-upload: the server exits 0 at the drain deadline, not when the client
    /// gives up (never) nor at the body timeout (here 300 s). The bar leaves a loaded machine 40 s for 1 s of drain
    /// and the exit (alone it takes 0.03 s after the drain); only the deadline closing the connection passes it.
    @Test func sigtermClosesStalledConnectionsAtTheDeadline() async throws {
        let server = try ServerProcess(["--model", "inception_resnet_v1_facenet", "--random-weights", "1",
                                        "--drain-timeout", "1", "--body-timeout", "300"])
        try await server.waitUntilReady()
        let stalled = try RawConnection(port: server.port)
        #expect(stalled.send(
            "POST \(HostileServerTests.face)/embed HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc"))
        try await HostileServerTests.waitUntilCounted(server.client, 1)
        let start = ContinuousClock.now
        kill(server.process.processIdentifier, SIGTERM)
        while server.process.isRunning && ContinuousClock.now - start < .seconds(40) {
            try await Task.sleep(for: .milliseconds(20))
        }
        let stopped = ContinuousClock.now - start
        #expect(!server.process.isRunning && stopped < .seconds(40), "\(stopped)")
        #expect(server.process.terminationStatus == 0)
    }
}
