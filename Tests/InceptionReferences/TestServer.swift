import Foundation
import InceptionTestSupport
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import InceptionServer

/// A server on 127.0.0.1 (a free port), driven over real HTTP.
package struct TestServer {
    package let base: URL
    package let server: InferenceServer

    package struct Reply {
        package let status: Int
        package let headers: [String: String]
        package let body: Data
        package var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
        package var error: String? { json["error"] as? String }
    }

    package static let session: URLSession = {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = 32
        configuration.timeoutIntervalForRequest = 120
        return URLSession(configuration: configuration)
    }()

    /// Runs `body` against a server of `models`; waits for `/ready` unless told not to; stops the server after.
    package static func with<T>(_ models: [InferenceServer.ModelSource],
                        configure: (inout InferenceServer.Configuration) -> Void = { _ in },
                        waitUntilReady: Bool = true, _ body: (TestServer) async throws -> T) async throws -> T {
        var configuration = InferenceServer.Configuration()
        configuration.port = 0
        configure(&configuration)
        let server = InferenceServer(models: models, configuration: configuration)
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        // The server's handlers run on threads of their own, as in `inception serve`: in this process the tests beside
        // it compute synchronously on the cooperative pool's threads (two on two cores), which once held a request
        // here past its 120 s timeout.
        let running = Task(executorPreference: ServerThreads.shared) { try await server.run { continuation.yield($0) } }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw CancellationError() }
        let test = TestServer(base: URL(string: "http://127.0.0.1:\(port)")!, server: server)
        let result: Result<T, any Error>
        do {
            if waitUntilReady {
                while try await test.get("/ready").status != 200 { try await Task.sleep(for: .milliseconds(20)) }
            }
            result = .success(try await body(test))
        } catch {
            result = .failure(error)
        }
        await server.shutdown()
        try await running.value
        return try result.get()
    }

    package func request(_ method: String, _ path: String, body: Data? = nil, contentType: String? = nil,
                 headers extra: [String: String] = [:]) async throws -> Reply {
        var request = URLRequest(url: URL(string: base.absoluteString + path)!)
        request.httpMethod = method
        request.httpBody = body
        if let contentType { request.setValue(contentType, forHTTPHeaderField: "Content-Type") }
        for (name, value) in extra { request.setValue(value, forHTTPHeaderField: name) }
        let (data, response) = try await Self.session.data(for: request)
        let http = response as! HTTPURLResponse
        var headers: [String: String] = [:]
        for (key, value) in http.allHeaderFields {
            headers[String(describing: key).lowercased()] = String(describing: value)
        }
        return Reply(status: http.statusCode, headers: headers, body: data)
    }

    package func get(_ path: String) async throws -> Reply { try await request("GET", path) }
    package func post(_ path: String, _ body: Data, contentType: String? = nil,
              headers: [String: String] = [:]) async throws -> Reply {
        try await request("POST", path, body: body, contentType: contentType, headers: headers)
    }
}

/// Threads that run the in-process servers' tasks (a task executor the server's task and its children prefer), so
/// that tests computing on the cooperative pool cannot starve a server of the threads it answers on.
package final class ServerThreads: TaskExecutor, @unchecked Sendable {
    package static let shared = ServerThreads(threads: 2)
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []

    package init(threads: Int) {
        for _ in 0..<threads {
            let thread = Thread { [self] in work() }
            thread.start()
        }
    }

    package func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func work() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

/// A multipart/form-data body with one file part.
package func multipartBody(_ file: Data, name: String = "image",
                           boundary: String = "XyZ-boundary-42") -> (Data, String) {
    var body = Data("preamble\r\n--\(boundary)\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n".utf8)
    body += Data("""
        --\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"; filename=\"photo.jpg\"\r\nContent-Type: \
        image/jpeg\r\n\r\n
        """.utf8)
    body += file + Data("\r\n--\(boundary)--\r\n".utf8)
    return (body, "multipart/form-data; boundary=\"\(boundary)\"")
}

extension Data {
    package func replacingOccurrences(of target: String, with replacement: String) -> Data {
        Data(String(decoding: self, as: UTF8.self).replacingOccurrences(of: target, with: replacement).utf8)
    }
}
