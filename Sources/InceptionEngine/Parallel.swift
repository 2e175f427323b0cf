import Foundation
import Dispatch
import Synchronization

/// Work sharing over the cores. Every parallel kernel goes through `parallelFor`, which runs `body` for each
/// index in `0..<count` on at most `threads` workers pulling indices from a shared counter. Workers come from
/// the process-wide Dispatch pool, so several models in one process share the cores instead of each
/// starting its own threads.
public enum Parallel {
    /// The number of cores this process may use.
    public static var defaultThreads: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

    public static func parallelFor(_ count: Int, threads: Int, _ body: (Int) -> Void) {
        let workers = min(threads, count)
        if workers <= 1 {
            for i in 0..<count { body(i) }
            return
        }
        let next = Atomic<Int>(0)
        withoutActuallyEscaping(body) { body in
            let shared = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: workers) { _ in
                while true {
                    let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                    if i >= count { break }
                    shared.value(i)
                }
            }
        }
    }
}

/// Wraps a value the engine shares between its own workers under its own discipline (disjoint writes).
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}






import Foundation
