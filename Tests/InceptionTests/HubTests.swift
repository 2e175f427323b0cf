import Foundation
import Inception
import InceptionEngine
import InceptionReferences
import InceptionTestSupport
import Testing

/// A local Hub (scripts/fake_hub.py on 127.0.0.1) serving the reference Inception-v4 weights at the Hub's URL
/// layout. There is no internet here; this is the Hub's protocol as huggingface_hub speaks it.
final class LocalHub {
    let root: URL, cache: URL, process = Process()
    let port: Int

    init() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("hub-\(UUID())")
        cache = root.appendingPathComponent("cache")
        let repo = root.appendingPathComponent("files/timm/inception_v4.tf_in1k")
        try FileManager.default.createDirectory(at: repo, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: repo.appendingPathComponent("model.safetensors"),
                                                   withDestinationURL: try References.weights(.inceptionV4))
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", repositoryRoot.appendingPathComponent("scripts/fake_hub.py").path,
                             root.appendingPathComponent("files").path]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        var line = Data()
        while let byte = try out.fileHandleForReading.read(upToCount: 1), !byte.isEmpty,
            byte != Data("\n".utf8) { line += byte }
        port = Int(String(decoding: line, as: UTF8.self)) ?? 0
    }

    deinit {
        // SIGKILL: the child inherits the test runner's blocked signal mask, so SIGTERM would never arrive.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: root)
    }

    var environment: [String: String] { ["HF_ENDPOINT": "http://127.0.0.1:\(port)", "HF_HUB_CACHE": cache.path] }
    var client: HubClient { HubClient(environment: environment) }
    var gets: Int {
        let log = (try? String(contentsOf: root.appendingPathComponent("files/requests.log"), encoding: .utf8)) ?? ""
        return log.split(separator: "\n").filter { $0.hasPrefix("GET /timm/") }.count
    }
    func truncate(_ on: Bool) throws { try mark("truncate", on) }

    func mark(_ kind: String, _ on: Bool) throws {
        let marker = root.appendingPathComponent("files/timm/inception_v4.tf_in1k/model.safetensors.\(kind)")
        if on { try Data().write(to: marker) } else { try? FileManager.default.removeItem(at: marker) }
    }
}

@Suite(.serialized) struct HubTests {
    let repo = "timm/inception_v4.tf_in1k"

    @Test func fillsTheCacheInHuggingFaceHubsLayoutThenReusesIt() throws {
        let hub = try LocalHub()
        var client = hub.client
        let reports = Locked<[DownloadProgress]>([])
        client.progress = { report in reports.withLock { $0.append(report) } }
        let path = try client.file(repo: repo, filename: "model.safetensors")
        let expected = try Data(contentsOf: try References.weights(.inceptionV4))
        #expect(try Data(contentsOf: path) == expected)
        // Progress goes to the caller: counts that only grow, one last report of the whole file.
        let received = reports.withLock { $0.map(\.received) }
        #expect(received == received.sorted() && received.last == expected.count)
        #expect(reports.withLock { $0.filter(\.finished).count == 1 && $0.last!.finished
                                  && $0.last!.total == expected.count })
        let storage = hub.cache.appendingPathComponent("models--timm--inception_v4.tf_in1k")
        let commit = "0123456789abcdef0123456789abcdef01234567"
        #expect(try String(contentsOf: storage.appendingPathComponent("refs/main"), encoding: .utf8) == commit)
        let snapshot = storage.appendingPathComponent("snapshots/\(commit)/model.safetensors").path
        let link = try FileManager.default.destinationOfSymbolicLink(atPath: snapshot)
        #expect(link.hasPrefix("../../blobs/") && link.count == "../../blobs/".count + 64)
        #expect(hub.gets == 1)
        _ = try hub.client.file(repo: repo, filename: "model.safetensors")
        #expect(hub.gets == 1, "the second call downloaded again")
        var offline = hub.client
        offline.offline = true
        #expect(try offline.file(repo: repo, filename: "model.safetensors") == path)
    }

    @Test func anInterruptedDownloadLeavesNothingBehind() throws {
        let hub = try LocalHub()
        try hub.truncate(true)
        #expect { try hub.client.file(repo: repo, filename: "model.safetensors") } throws: { error in
            guard case .incomplete = error as? HubError else {
                return "\(error)".contains("broke off") || "\(error)".contains("cannot reach")
            }
            return true
        }
        let blobs = hub.cache.appendingPathComponent("models--timm--inception_v4.tf_in1k/blobs")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: blobs.path)) ?? [] == [])
        #expect(hub.client.cached(repo: repo, filename: "model.safetensors") == nil)
        try hub.truncate(false)
        #expect(try Data(contentsOf: try hub.client.file(repo: repo, filename: "model.safetensors")).count > 0)
    }

    @Test func aDownloadWhoseHashDoesNotMatchIsNotKept() throws {
        let hub = try LocalHub()
        try hub.mark("badhash", true)
        #expect { try hub.client.file(repo: repo, filename: "model.safetensors") } throws: { error in
            guard case .hashMismatch = error as? HubError else { return false }
            return "\(error)".hasSuffix("expected \(String(repeating: "0", count: 64)); nothing was kept")
        }
        let blobs = hub.cache.appendingPathComponent("models--timm--inception_v4.tf_in1k/blobs")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: blobs.path)) ?? [] == [])
    }

    /// Answers that would put a path outside the cache, or that lack what the cache layout needs, are refused.
    @Test func malformedAnswersAreRefused() throws {
        let url = URL(string: "http://127.0.0.1/timm/x/resolve/main/model.safetensors")!
        let commit = "0123456789abcdef0123456789abcdef01234567"
        func metadata(_ status: Int, _ headers: [String: String]) throws -> HubClient.Metadata {
            try HubClient.metadata(status: status, headers: headers, url: url)
        }
        #expect(throws: HubError.notFound(url: url.absoluteString, status: 404)) { try metadata(404, [:]) }
        #expect(throws: HubError.httpStatus(url: url.absoluteString, status: 500)) { try metadata(500, [:]) }
        #expect(throws: HubError.malformedResponse(url: url.absoluteString,
                                                   missing: "X-Repo-Commit")) { try metadata(200, ["ETag": "\"abc\""]) }
        #expect(throws: HubError.malformedResponse(url: url.absoluteString, missing: "ETag")) { try metadata(200,
            ["X-Repo-Commit": commit]) }
        for etag in ["\"../../../etc/passwd\"", "\"a/b\"", "\"\"", "W/\"..\""] {
            #expect(throws: HubError.malformedResponse(url: url.absoluteString,
                                                       missing: "a usable ETag and X-Repo-Commit")) {
                try metadata(200, ["X-Repo-Commit": commit, "ETag": etag])
            }
        }
        #expect(throws: HubError.malformedResponse(url: url.absoluteString,
                                                   missing: "a usable ETag and X-Repo-Commit")) {
            try metadata(200, ["X-Repo-Commit": "../main", "ETag": "\"abc\""])
        }
        #expect(throws: HubError.malformedResponse(url: url.absoluteString, missing: "a valid size")) {
            try metadata(200, ["X-Repo-Commit": commit, "ETag": "\"abc\"", "Content-Length": "-5"])
        }
        // A redirect to the CDN: the commit, etag and size come from the first answer, the body from Location.
        let ok = try metadata(302, ["x-repo-commit": commit, "X-Linked-Etag": "\"deadbeef\"", "X-Linked-Size": "42",
                                    "Location": "/cdn/blob?x=1"])
        #expect(ok == HubClient.Metadata(commit: commit, etag: "deadbeef", size: 42,
                                         downloadURL: URL(string: "http://127.0.0.1/cdn/blob?x=1")))
    }

    @Test func offlineWithAnEmptyCacheIsAClearError() throws {
        let hub = try LocalHub()
        var offline = hub.client
        offline.offline = true
        #expect(throws: HubError.offlineNotCached(repo: repo, filename: "model.safetensors", cache: hub.cache.path)) {
            try offline.file(repo: repo, filename: "model.safetensors")
        }
        let result = try runInception(["classify", try Photos.imageURL("rocket.jpg").path],
                                      environment: hub.environment.merging(["HF_HUB_OFFLINE": "1"]) { $1 })
        #expect(result.status == 1)
        // One line: what is missing, then how else to get weights (--weights, init, conversion, HF_ENDPOINT, cache).
        #expect(result.stderr.hasPrefix("error: HF_HUB_OFFLINE is set and timm/inception_v4.tf_in1k/model.safetensors "
                                        + "is not in the cache \(hub.cache.path) (to run without the Hub: pass "
                                        + "--weights FILE (safetensors or a PyTorch .pt/.pth/.bin; "))
        #expect(result.stderr.hasSuffix("mirror, or put the weights in the Hub cache, \(hub.cache.path))\n"))
        #expect(result.stderr.split(separator: "\n").count == 1)
        #expect(hub.gets == 0)
    }

    @Test func classifyWithoutWeightsUsesTheHub() throws {
        let hub = try LocalHub()
        let image = try Photos.imageURL("chelsea_baseline.jpg").path
        let fromHub = try runInception(["classify", "--json", image], environment: hub.environment)
        #expect(fromHub.status == 0, "\(fromHub.stderr)")
        let local = try runInception(["classify", "--json", "--weights", try References.weights(.inceptionV4).path,
                                      image])
        #expect(fromHub.stdout == local.stdout)
    }

    /// Python's huggingface_hub reads a cache we filled, and we read one it filled.
    @Test func sharesTheCacheWithPythonsHuggingFaceHub() throws {
        let hub = try LocalHub()
        _ = try hub.client.file(repo: repo, filename: "model.safetensors")
        let download = "h.hf_hub_download('\(repo)', 'model.safetensors', local_files_only=True)"
        let read = try run(venvPython(), ["-c", "import huggingface_hub as h; print(\(download))"],
                           environment: hub.environment)
        #expect(read.status == 0, "\(read.stderr)")
        #expect(read.stdout.contains("snapshots/0123456789abcdef0123456789abcdef01234567/model.safetensors"))

        let other = try LocalHub()
        let script = "import huggingface_hub as h; h.hf_hub_download('\(repo)', 'model.safetensors')"
        let filled = try run(venvPython(), ["-c", script],
                             environment: other.environment)
        #expect(filled.status == 0, "\(filled.stderr)")
        var offline = other.client
        offline.offline = true
        let path = try offline.file(repo: repo, filename: "model.safetensors")
        #expect(try Data(contentsOf: path) == Data(contentsOf: try References.weights(.inceptionV4)))
    }
}
