import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Downloads files from the Hugging Face Hub into huggingface_hub's cache layout, so a cache filled by Python's
/// `huggingface_hub` is reused here and the other way round:
///
///     <cache>/models--<org>--<name>/blobs/<etag>                     the file, named by its etag
///     <cache>/models--<org>--<name>/snapshots/<commit>/<filename>    → ../../blobs/<etag> (relative link)
///     <cache>/models--<org>--<name>/refs/<revision>                  the commit the revision resolved to
///
/// Environment, as huggingface_hub: `HF_ENDPOINT` (default https://huggingface.co), `HF_HUB_CACHE`, else
/// `HF_HOME/hub`, else `~/.cache/huggingface/hub`; `HF_HUB_OFFLINE=1` uses the cache only; `HF_TOKEN`.
/// A download streams into `blobs/<etag>.incomplete` and is renamed only when its size (and, for LFS files,
/// whose etag is the SHA-256, its hash) checks out; on any failure the partial file is removed.
public struct HubClient: Sendable {
    public var endpoint: URL
    public var cacheDirectory: URL
    public var offline: Bool
    public var token: String?
    /// Told of a download's progress as its bytes arrive (nil: silent). The command line draws a bar with it.
    public var progress: (@Sendable (DownloadProgress) -> Void)?

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        endpoint = URL(string: environment["HF_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 }
                       ?? "https://huggingface.co")!
        if let cache = environment["HF_HUB_CACHE"], !cache.isEmpty {
            cacheDirectory = URL(fileURLWithPath: cache)
        } else if let home = environment["HF_HOME"], !home.isEmpty {
            cacheDirectory = URL(fileURLWithPath: home).appendingPathComponent("hub")
        } else {
            let home = environment["HOME"] ?? NSHomeDirectory()
            let xdg = environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? "\(home)/.cache"
            cacheDirectory = URL(fileURLWithPath: xdg).appendingPathComponent("huggingface/hub")
        }
        offline = ["1", "ON", "YES", "TRUE"].contains((environment["HF_HUB_OFFLINE"] ?? "").uppercased())
        token = environment["HF_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
    }

    func storage(_ repo: String) -> URL {
        cacheDirectory.appendingPathComponent("models--" + repo.replacingOccurrences(of: "/", with: "--"))
    }

    /// The local path of `filename` in `repo` at `revision`, downloading it if the cache does not have it.
    public func file(repo: String, filename: String, revision: String = "main") throws -> URL {
        let storage = self.storage(repo)
        if offline {
            if let cached = cached(repo: repo, filename: filename, revision: revision) { return cached }
            throw HubError.offlineNotCached(repo: repo, filename: filename, cache: cacheDirectory.path)
        }
        let url = endpoint.appendingPathComponent(repo).appendingPathComponent("resolve")
            .appendingPathComponent(revision).appendingPathComponent(filename)
        let metadata: Metadata
        do {
            metadata = try head(url)
        } catch let error as HubError {
            // Unreachable Hub: fall back to the cache, as huggingface_hub does.
            if case .network = error, let cached = cached(repo: repo, filename: filename, revision: revision) {
                return cached
            }
            throw error
        }
        let fm = FileManager.default
        let snapshot = storage.appendingPathComponent("snapshots").appendingPathComponent(metadata.commit)
        let pointer = snapshot.appendingPathComponent(filename)
        let blob = storage.appendingPathComponent("blobs").appendingPathComponent(metadata.etag)
        try fm.createDirectory(at: blob.deletingLastPathComponent(), withIntermediateDirectories: true)
        try fm.createDirectory(at: pointer.deletingLastPathComponent(), withIntermediateDirectories: true)
        if revision != metadata.commit {
            let refs = storage.appendingPathComponent("refs").appendingPathComponent(revision)
            try fm.createDirectory(at: refs.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(metadata.commit.utf8).write(to: refs, options: .atomic)
        }
        if fm.fileExists(atPath: pointer.path) { return pointer }
        if !fm.fileExists(atPath: blob.path) {
            try download(metadata.downloadURL ?? url, to: blob, metadata: metadata, label: "\(repo) \(filename)")
        }
        let depth = filename.split(separator: "/").count + 1
        let target = String(repeating: "../", count: depth) + "blobs/" + metadata.etag
        try? fm.removeItem(at: pointer)
        try fm.createSymbolicLink(atPath: pointer.path, withDestinationPath: target)
        return pointer
    }

    /// The cached file for a revision (a branch name resolved through `refs/`, or a commit hash), if present.
    public func cached(repo: String, filename: String, revision: String = "main") -> URL? {
        let storage = self.storage(repo)
        var commit = revision
        if let ref = try? String(contentsOf: storage.appendingPathComponent("refs").appendingPathComponent(revision),
                                 encoding: .utf8) {
            commit = ref.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let pointer = storage.appendingPathComponent("snapshots").appendingPathComponent(commit)
            .appendingPathComponent(filename)
        return FileManager.default.fileExists(atPath: pointer.path) ? pointer : nil
    }

    /// What the Hub says about a file.
    public struct Metadata: Sendable, Equatable {
        public var commit: String
        public var etag: String
        public var size: Int?
        public var downloadURL: URL?

        public init(commit: String, etag: String, size: Int?, downloadURL: URL?) {
            (self.commit, self.etag, self.size, self.downloadURL) = (commit, etag, size, downloadURL)
        }
    }

    /// HEAD without following redirects: the Hub puts the commit and the LFS etag and size on the first response.
    func head(_ url: URL) throws -> Metadata {
        var request = URLRequest(url: url)
        request.httpMethod = "HEAD"
        request.setValue("identity", forHTTPHeaderField: "Accept-Encoding")
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        let (response, _) = try Transfer.run(request, followRedirects: false, sink: nil)
        var headers: [String: String] = [:]
        for (key, value) in response.allHeaderFields { headers["\(key)"] = "\(value)" }
        return try Self.metadata(status: response.statusCode, headers: headers, url: url)
    }

    /// What a HEAD answer says about a file: its commit, etag, size and where to download it. A pure function of
    /// the answer, so that hostile or broken answers can be tested (and fuzzed) without a server.
    public static func metadata(status: Int, headers: [String: String], url: URL) throws -> Metadata {
        guard (200..<400).contains(status) else {
            throw status == 404 || status == 401
                ? HubError.notFound(url: url.absoluteString, status: status)
                : HubError.httpStatus(url: url.absoluteString, status: status)
        }
        let lowered = Dictionary(headers.map { ($0.key.lowercased(), $0.value) }, uniquingKeysWith: { a, _ in a })
        func header(_ name: String) -> String? { lowered[name.lowercased()] }
        guard let commit = header("X-Repo-Commit") else { throw HubError.malformedResponse(url: url.absoluteString,
            missing: "X-Repo-Commit") }
        guard var etag = header("X-Linked-Etag") ?? header("ETag") else {
            throw HubError.malformedResponse(url: url.absoluteString, missing: "ETag")
        }
        if etag.hasPrefix("W/") { etag.removeFirst(2) }
        etag = etag.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        // Both become path components in the cache: only plain hex-and-letters names are accepted.
        let safe = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-_"))
        guard !etag.isEmpty, etag.count <= 256, etag.unicodeScalars.allSatisfy({ safe.contains($0) && $0.isASCII }),
              !commit.isEmpty, commit.count <= 64, commit.allSatisfy({ $0.isHexDigit && $0.isASCII }) else {
            throw HubError.malformedResponse(url: url.absoluteString, missing: "a usable ETag and X-Repo-Commit")
        }
        var size: Int? = nil
        if let text = header("X-Linked-Size") ?? header("Content-Length") {
            guard let value = Int(text.trimmingCharacters(in: .whitespaces)), value >= 0 else {
                throw HubError.malformedResponse(url: url.absoluteString, missing: "a valid size")
            }
            size = value
        }
        let location = (300..<400).contains(status) ? header("Location").flatMap { URL(string: $0,
            relativeTo: url) } : nil
        return Metadata(commit: commit, etag: etag, size: size, downloadURL: location?.absoluteURL)
    }

    func download(_ url: URL, to blob: URL, metadata: Metadata, label: String) throws {
        let partial = blob.appendingPathExtension("incomplete")
        let fm = FileManager.default
        try? fm.removeItem(at: partial)
        guard fm.createFile(atPath: partial.path, contents: nil) else { throw HubError.cannotWrite(path: partial.path) }
        var success = false
        defer { if !success { try? fm.removeItem(at: partial) } }
        let handle = try FileHandle(forWritingTo: partial)
        let sink = Sink(handle: handle) { [progress] received, finished in
            progress?(DownloadProgress(label: label, received: received, total: metadata.size, finished: finished))
        }
        defer { sink.report(sink.written, true) }
        var request = URLRequest(url: url)
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        let (response, transferError) = try Transfer.run(request, followRedirects: true, sink: sink)
        try handle.close()
        if let transferError { throw HubError.network(url: url.absoluteString, reason: transferError) }
        guard (200..<300).contains(response.statusCode) else { throw HubError.httpStatus(url: url.absoluteString,
            status: response.statusCode) }
        if let error = sink.error { throw error }
        let written = sink.written
        if let expected = metadata.size, expected != written {
            throw HubError.incomplete(url: url.absoluteString, expected: expected, received: written)
        }
        if metadata.etag.count == 64, metadata.etag.allSatisfy(\.isHexDigit) {
            let digest = sink.finalizeHash()
            guard digest == metadata.etag.lowercased() else {
                throw HubError.hashMismatch(url: url.absoluteString, expected: metadata.etag, actual: digest)
            }
        }
        try fm.moveItem(at: partial, to: blob)
        success = true
    }
}

/// Receives a download's bytes on URLSession's delegate queue: writes them, hashes them, reports progress.
final class Sink: @unchecked Sendable {
    let handle: FileHandle
    let report: (_ received: Int, _ finished: Bool) -> Void
    private(set) var written = 0
    private(set) var error: Error?
    private var hash = SHA256()

    init(handle: FileHandle, report: @escaping (_ received: Int, _ finished: Bool) -> Void) {
        (self.handle, self.report) = (handle, report)
    }

    func receive(_ data: Data) {
        guard error == nil else { return }
        do { try handle.write(contentsOf: data) } catch { self.error = HubError.cannotWrite(path: "\(error)"); return }
        hash.update(data)
        written += data.count
        report(written, false)
    }

    func finalizeHash() -> String { hash.finalize() }
}

/// One HTTP request through URLSession, synchronously, with control over redirects and streaming.
final class Transfer: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    private let followRedirects: Bool
    private let sink: Sink?
    private let done = DispatchSemaphore(value: 0)
    private var response: HTTPURLResponse?
    private var failure: String?

    private init(followRedirects: Bool, sink: Sink?) { (self.followRedirects, self.sink) = (followRedirects, sink) }

    /// The response, and a transport error if the body did not arrive whole.
    static func run(_ request: URLRequest, followRedirects: Bool, sink: Sink?) throws -> (HTTPURLResponse, String?) {
        let transfer = Transfer(followRedirects: followRedirects, sink: sink)
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 60
        let session = URLSession(configuration: configuration, delegate: transfer, delegateQueue: nil)
        defer { session.finishTasksAndInvalidate() }
        session.dataTask(with: request).resume()
        transfer.done.wait()
        guard let response = transfer.response else {
            throw HubError.network(url: request.url?.absoluteString ?? "", reason: transfer.failure ?? "no response")
        }
        return (response, transfer.failure)
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) {
        completionHandler(followRedirects ? request : nil)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        self.response = response as? HTTPURLResponse
        completionHandler(.allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        if let code = response?.statusCode, (200..<300).contains(code) { sink?.receive(data) }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        if response == nil, let http = task.response as? HTTPURLResponse { response = http }
        if let error { failure = (error as NSError).localizedDescription }
        done.signal()
    }
}

/// How far one download has come.
public struct DownloadProgress: Sendable {
    /// What is being downloaded (the file's name).
    public let label: String
    public let received: Int
    /// The file's size, when the Hub said it.
    public let total: Int?
    /// The last report of this download (whether or not it succeeded).
    public let finished: Bool
}

public enum HubError: Error, Equatable, CustomStringConvertible {
    case offlineNotCached(repo: String, filename: String, cache: String)
    case network(url: String, reason: String)
    case notFound(url: String, status: Int)
    case httpStatus(url: String, status: Int)
    case malformedResponse(url: String, missing: String)
    case incomplete(url: String, expected: Int, received: Int)
    case hashMismatch(url: String, expected: String, actual: String)
    case cannotWrite(path: String)
    case noReleasedWeights(model: String)

    public var description: String {
        switch self {
        case let .offlineNotCached(repo, filename, cache):
            return "HF_HUB_OFFLINE is set and \(repo)/\(filename) is not in the cache \(cache)"
        case let .network(url, reason): return "cannot reach \(url): \(reason)"
        case let .notFound(url, status): return "the Hub has no \(url) (HTTP \(status))"
        case let .httpStatus(url, status): return "the Hub answered HTTP \(status) for \(url)"
        case let .malformedResponse(url, missing): return "the Hub's answer for \(url) lacks \(missing)"
        case let .incomplete(url, expected, received):
            return "download of \(url) broke off after \(received) of \(expected) bytes; nothing was kept"
        case let .hashMismatch(url, expected, actual):
            return "download of \(url) is corrupt: SHA-256 \(actual), expected \(expected); nothing was kept"
        case let .cannotWrite(path): return "cannot write \(path)"
        case let .noReleasedWeights(model): return "\(model) has no released safetensors weights on the Hub"
        }
    }
}
