import Foundation
import Dispatch
import Synchronization

/// Work sharing over the cores. Every parallel kernel goes through `parallelFor`, which runs `body` for each
/// index in `0..<count` on at most `threads` workers pulling indices from a shared counter.
///
/// A network is a few hundred parallel regions of 20–500 µs each, so the cost of starting one matters (waking a
/// sleeping Dispatch worker takes tens of µs). The workers are one process-wide pool of cores − 1 helper threads
/// that spin briefly after each region before they sleep, so back-to-back regions start in well under a µs; the
/// calling thread is the last worker. A region started while another is running (two models, or concurrent
/// calls, in one process) runs on Dispatch's shared pool instead, so several callers never start more threads
/// than Dispatch allows.
public enum Parallel {
    /// The number of cores this process may use.
    public static var defaultThreads: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

    /// `body` for each index in `0..<count`, handed out in runs of `grain` consecutive indices.
    package static func parallelFor(_ count: Int, threads: Int, grain: Int, _ body: (Int) -> Void) {
        let runs = (count + grain - 1) / grain
        parallelFor(runs, threads: threads) { run in
            for i in (run * grain)..<min(count, (run + 1) * grain) { body(i) }
        }
    }

    package static func parallelFor(_ count: Int, threads: Int, _ body: (Int) -> Void) {
        let workers = min(threads, count)
        if workers <= 1 {
            for i in 0..<count { body(i) }
            return
        }
        if WorkerPool.shared.run(count, workers: workers, body) { return }
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

/// Helper threads for `parallelFor`, one region at a time.
///
/// A region is published in one word, `state` = (generation, count, next index). Workers claim index i by a
/// compare-exchange from (g, n, i) to (g, n, i + 1) when i < n, so a worker that woke late for an old region can
/// never claim an index of a newer one, nor one past its own region's end; the body is read only after a successful
/// claim, and the caller returns only when every claimed index has finished, so it stays valid while used.
///
/// The count lives in the word because a separate one was read in a window that let a late worker claim index n of
/// an old region while the next region's count was already stored: it then ran the new region's body for an index
/// that another worker also ran, and its extra `finished` let the caller return early — wrong sums, and, once in
/// a few thousand training steps, "closure argument was escaped in withoutActuallyEscaping block".
final class WorkerPool: @unchecked Sendable {
    static let shared = WorkerPool(helpers: Parallel.defaultThreads - 1)

    /// `state`'s layout: generation (20 bits) | count (22 bits) | next index (22 bits). Larger regions run on Dispatch.
    static let fieldBits: UInt64 = 22
    static let fieldMask: UInt64 = 1 << fieldBits - 1
    static let generationShift: UInt64 = 2 * fieldBits
    static let generationMask: UInt64 = 1 << (64 - generationShift) - 1

    /// Spin iterations (atomic loads) a helper waits for the next region before it sleeps: tens of µs.
    static let spinLimit = 1 << 15

    private let helpers: Int
    private let busy = Atomic<Bool>(false)
    private let state = Atomic<UInt64>(0)
    private let tickets = Atomic<Int>(0)
    private let finished = Atomic<Int>(0)
    private let body = Atomic<UInt>(0)  // address of the region's `(Int) -> Void`
    private var generation: UInt64 = 0  // written by the caller that holds `busy`
    private let sleep = NSCondition()
    private var sleeping = 0  // guarded by `sleep`

    init(helpers: Int) {
        self.helpers = max(0, helpers)
        for index in 0..<self.helpers {
            let thread = Thread { [self] in self.serve() }
            thread.name = "inception-worker-\(index)"
            thread.start()
        }
    }

    /// Runs the region on the pool; false when the pool is busy with another region (or has no helpers).
    func run(_ count: Int, workers: Int, _ body: (Int) -> Void) -> Bool {
        guard helpers > 0, UInt64(count) <= Self.fieldMask,
              busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            return false
        }
        defer { busy.store(false, ordering: .releasing) }
        return withoutActuallyEscaping(body) { body in
            var region = body
            return withUnsafeMutablePointer(to: &region) { pointer in
                generation = (generation + 1) & Self.generationMask
                let g = generation
                finished.store(0, ordering: .relaxed)
                self.body.store(UInt(bitPattern: pointer), ordering: .relaxed)
                tickets.store(min(workers - 1, helpers), ordering: .relaxed)
                state.store(g << Self.generationShift | UInt64(count) << Self.fieldBits, ordering: .releasing)
                sleep.lock()
                if sleeping > 0 { sleep.broadcast() }
                sleep.unlock()
                work(generation: g)
                // Wait for the indices helpers claimed.
                var waited = 0
                while finished.load(ordering: .acquiring) < count {
                    waited += 1
                    if waited > Self.spinLimit { sched_yield() }
                }
                return true
            }
        }
    }

    /// Claims and runs indices of region `g` until none is left.
    private func work(generation g: UInt64) {
        while true {
            let s = state.load(ordering: .acquiring)
            guard s >> Self.generationShift == g else { return }
            let (i, count) = (Int(s & Self.fieldMask), Int(s >> Self.fieldBits & Self.fieldMask))
            guard i < count else { return }
            guard state.compareExchange(expected: s, desired: s + 1, ordering: .acquiringAndReleasing).exchanged else {
                continue
            }
            Self.call(UnsafeMutablePointer(bitPattern: self.body.load(ordering: .relaxed))!, i)
            finished.wrappingAdd(1, ordering: .releasing)
        }
    }

    /// Runs the region's body for index i. Calling the closure retains its context and releases it afterwards; out
    /// of line, that release is over before `finished` says the index is done and the caller leaves
    /// `withoutActuallyEscaping`.
    @inline(never)
    private static func call(_ body: UnsafeMutablePointer<(Int) -> Void>, _ i: Int) { body.pointee(i) }

    private func serve() {
        var seen: UInt64 = 0
        while true {
            var spins = 0
            while state.load(ordering: .acquiring) >> Self.generationShift == seen {
                spins += 1
                if spins > Self.spinLimit {
                    sleep.lock()
                    while state.load(ordering: .acquiring) >> Self.generationShift == seen {
                        sleeping += 1
                        sleep.wait()
                        sleeping -= 1
                    }
                    sleep.unlock()
                }
            }
            seen = state.load(ordering: .acquiring) >> Self.generationShift
            // Only as many helpers as the caller asked for join.
            var t = tickets.load(ordering: .relaxed)
            while t > 0 {
                let (exchanged, original) = tickets.compareExchange(expected: t, desired: t - 1, ordering: .relaxed)
                if exchanged { work(generation: state.load(ordering: .acquiring) >> Self.generationShift); break }
                t = original
            }
        }
    }
}

/// Wraps a value shared between `parallelFor` workers under the caller's own discipline (disjoint writes).
package struct UncheckedSendable<T>: @unchecked Sendable {
    package let value: T
    package init(_ value: T) { self.value = value }
}
