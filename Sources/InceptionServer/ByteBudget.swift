import CInceptionSystem
import Foundation
import InceptionEngine

/// A cap on the request bytes the server holds at once (bodies being read, decoded or queued), counted from each
/// request's Content-Length (or the body limit when it sends none) before its body is read.
final class ByteBudget: Sendable {
    let limit: Int
    private let state = Locked((reserved: 0, trimPending: false))

    init(limit: Int) { self.limit = limit }

    /// Reserves `bytes`, or returns false when that would pass the limit.
    func reserve(_ bytes: Int) -> Bool {
        state.withLock { s in
            guard s.reserved + bytes <= limit else { return false }
            s.reserved += bytes
            return true
        }
    }

    /// Gives `bytes` back. Whenever no request holds bytes any more, the allocator is asked (a second later, at most
    /// once a second) to return its free memory to the system: glibc kept freed buffers — request bodies, libjpeg's
    /// coefficient rows of a progressive JPEG — in its heaps (1 GB stayed resident after 100 uploads).
    func release(_ bytes: Int) {
        let trim = state.withLock { s -> Bool in
            s.reserved -= bytes
            guard s.reserved == 0, !s.trimPending else { return false }
            s.trimPending = true
            return true
        }
        guard trim else { return }
        // A second later: the last request's buffers are freed once its answer is written, after this release.
        DispatchQueue.global(qos: .utility).asyncAfter(deadline: .now() + 1) { [state] in
            state.withLock { $0.trimPending = false }
            _ = inception_release_free_memory()
        }
    }

    var reserved: Int { state.withLock { $0.reserved } }
}
