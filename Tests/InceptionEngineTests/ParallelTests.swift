import Foundation
import Synchronization
import Testing
import InceptionEngine

/// The worker pool under back-to-back regions of alternating sizes, the pattern that let a late worker claim an
/// index past its region's end while the next region was being published. Threads spinning beside it preempt the
/// pool's workers at random points, as a busy machine does (the race needed a worker to stall between two loads).
struct ParallelTests {
    @Test func everyIndexRunsOnceBeforeItsRegionReturns() {
        let sizes = [1, 2, 3, 200, 2, 64, 5, 1000]
        let slots = UnsafeMutablePointer<Int>.allocate(capacity: sizes.max()!)
        defer { slots.deallocate() }
        let shared = UncheckedSendable(slots)
        let stop = Atomic<Bool>(false)
        let spinners = DispatchGroup()
        for _ in 0..<3 {
            DispatchQueue.global().async(group: spinners) { while !stop.load(ordering: .relaxed) {} }
        }
        defer { stop.store(true, ordering: .relaxed); spinners.wait() }
        var wrong = 0
        for region in 0..<500_000 {
            let count = sizes[region % sizes.count]
            slots.initialize(repeating: 0, count: count)
            Parallel.parallelFor(count, threads: 4) { i in shared.value[i] += 1 }
            for i in 0..<count where slots[i] != 1 { wrong += 1 }
        }
        #expect(wrong == 0, "\(wrong) indices did not run exactly once before their region returned")
    }
}
