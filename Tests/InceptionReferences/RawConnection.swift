import Foundation
import InceptionServer
import InceptionTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A TCP connection to 127.0.0.1 driven byte by byte, for what URLSession cannot do: stall mid-request, send
/// headers only, hold a connection idle, disconnect before the answer.
package final class RawConnection {
    package let fd: Int32

    package init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard status == 0 else {
            close(fd)
            throw Failure("connect: errno \(errno)")
        }
    }

    deinit { close(fd) }

    /// Sends all of `data`; false once the server has closed the connection.
    @discardableResult
    package func send(_ data: Data) -> Bool {
        data.withUnsafeBytes { raw in
            var sent = 0
            while sent < raw.count {
                let n = Glibc.send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
                if n <= 0 { return false }
                sent += n
            }
            return true
        }
    }

    @discardableResult
    package func send(_ text: String) -> Bool { send(Data(text.utf8)) }

    /// Everything the server sends until it closes the connection or `timeout` passes; `closed` says which.
    package func receive(timeout: Duration) -> (data: Data, closed: Bool) {
        let deadline = ContinuousClock.now + timeout
        var data = Data(), buffer = [UInt8](repeating: 0, count: 65536)
        while ContinuousClock.now < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let left = Int32(max(1, (deadline - .now) / .milliseconds(1)))
            guard poll(&poller, 1, left) > 0 else { continue }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { return (data, true) }
            data.append(contentsOf: buffer[0..<n])
        }
        return (data, false)
    }

    /// The status code of the first HTTP response in `data`.
    package static func status(_ data: Data) -> Int? {
        let line = String(decoding: data.prefix(64), as: UTF8.self).split(separator: "\r\n").first ?? ""
        let parts = line.split(separator: " ")
        return parts.count >= 2 ? Int(parts[1]) : nil
    }

    /// Closes the sending side only (the client is done) or both.
    package func shutdownWrite() { _ = shutdown(fd, Int32(SHUT_WR)) }
}

/// The server process's resident memory now and at its peak, in bytes (Linux /proc).
package func residentMemory(pid: Int32) -> (now: Int, peak: Int) {
    let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    func field(_ name: String) -> Int {
        let line = status.split(separator: "\n").first { $0.hasPrefix(name + ":") } ?? ""
        return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
    }
    return (field("VmRSS"), field("VmHWM"))
}

/// `inception serve --port 0 ARGUMENTS` as a child process, its port read from the line it prints when listening
/// (and with `grpc`, `--grpc-port 0` and its gRPC port from the line it prints for that): the one way the tests
/// launch a server process (stopped with SIGKILL when the value goes).
package final class ServerProcess {
    package let process = Process()
    package let port: Int
    /// The gRPC service's port, when started with `grpc`.
    package let grpcPort: Int?

    package init(_ arguments: [String], grpc: Bool = false, environment: [String: String] = [:]) throws {
        process.executableURL = inceptionExecutable()
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.arguments = ["serve", "--port", "0"] + (grpc ? ["--grpc-port", "0"] : []) + arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        // "inception serve: listening on http://127.0.0.1:PORT (…)", "inception serve: gRPC on 127.0.0.1:PORT (…)"
        var text = ""
        func port(after marker: String) -> Int? {
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()  // whole lines only
            guard let line = lines.first(where: { $0.contains(marker) }) else { return nil }
            return line.split(separator: ":").last?.split(separator: " ").first.flatMap { Int($0) }
        }
        while port(after: "listening on") == nil || (grpc && port(after: "gRPC on") == nil) {
            let chunk = out.fileHandleForReading.availableData
            guard !chunk.isEmpty else { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        guard let http = port(after: "listening on"), !grpc || port(after: "gRPC on") != nil else {
            process.terminate()
            throw Failure("no port in '\(text)'")
        }
        (self.port, grpcPort) = (http, port(after: "gRPC on"))
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

    package var client: TestServer {
        TestServer(base: URL(string: "http://127.0.0.1:\(port)")!, server: InferenceServer(models: []))
    }

    package func waitUntilReady() async throws {
        while try await client.get("/ready").status != 200 { try await Task.sleep(for: .milliseconds(50)) }
    }
}
