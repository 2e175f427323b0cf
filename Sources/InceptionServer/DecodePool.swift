import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where request bodies become pixels: a fixed set of threads off the event loops and off Swift's cooperative
/// pool, so that a slow image (a progressive JPEG of a thousand scans, a 25-Mpixel PNG) delays only its own
/// answer. The threads run at a lower scheduling priority than the forward passes (nice +5 on Linux), so decoding
/// under attack takes the cores the network leaves, not the other way round. Jobs run in arrival order; how many
/// can wait is bounded by the server's admission (`--max-queue` per model).
final class DecodePool: @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [() -> Void] = []
    private var closed = false

    init(threads: Int) {
        precondition(threads >= 1)
        for i in 0..<threads {
            let thread = Thread { [self] in work() }
            thread.name = "inception-decode-\(i)"
            thread.start()
        }
    }

    /// `body`'s result, computed on one of the pool's threads.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            condition.lock()
            defer { condition.unlock() }
            guard !closed else { return continuation.resume(throwing: Batcher.Refusal.shuttingDown) }
            jobs.append { continuation.resume(with: Result { try body() }) }
            condition.signal()
        }
    }

    /// Finishes the queued jobs, then ends the threads.
    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    private func work() {
        #if os(Linux)
        // On Linux the nice value is per thread: `who` 0 is the calling thread.
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 5)
        #endif
        while let job = next() { job() }
    }

    private func next() -> (() -> Void)? {
        condition.lock()
        defer { condition.unlock() }
        while jobs.isEmpty && !closed { condition.wait() }
        return jobs.isEmpty ? nil : jobs.removeFirst()
    }
}
