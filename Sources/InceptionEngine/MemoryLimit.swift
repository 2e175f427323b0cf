import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How much memory this process may use: the machine's physical memory, or its cgroup's limit when that is lower
/// (a container's `memory.max`). Sizes a caller controls (batch, input size) are checked against it before the
/// memory is allocated, so that asking for too much is one line instead of an abort in the allocator.
package enum MemoryLimit {
    /// Bytes of memory the process may hold in all.
    package static let total: Int = {
        let physical = Int(clamping: ProcessInfo.processInfo.physicalMemory)
        return min(physical, cgroupLimit() ?? .max)
    }()

    /// What is left of `total` after what the process holds now — and of its address-space limit (`ulimit -v`,
    /// RLIMIT_AS) after what it has mapped, when that is less.
    package static var available: Int {
        let (mapped, resident) = statm()
        let physical = max(0, total - resident)
        guard let limit = addressSpaceLimit() else { return physical }
        return min(physical, max(0, limit - mapped))
    }

    /// RLIMIT_AS's soft limit; nil when there is none.
    static func addressSpaceLimit() -> Int? {
        var limit = rlimit()
        #if canImport(Glibc)
        let resource = __rlimit_resource_t(RLIMIT_AS.rawValue)
        #else
        let resource = RLIMIT_AS
        #endif
        guard getrlimit(resource, &limit) == 0, limit.rlim_cur != rlim_t.max else { return nil }  // RLIM_INFINITY
        return Int(clamping: limit.rlim_cur)
    }

    /// Throws when `bytes` more would not fit in what is left; `what` names the allocation for the message.
    package static func check(_ bytes: Int, for what: String) throws(MemoryError) {
        let left = available
        guard bytes <= left else { throw MemoryError(what: what, needed: bytes, available: left, total: total) }
    }

    /// The process's mapped and resident sizes now, in bytes (/proc/self/statm's first two fields; 0 elsewhere).
    static func statm() -> (mapped: Int, resident: Int) {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return (0, 0) }
        let pages = text.split(separator: " ").prefix(2).compactMap { Int($0) }
        guard pages.count == 2 else { return (0, 0) }
        let size = Int(sysconf(Int32(_SC_PAGESIZE)))
        return (pages[0] * size, pages[1] * size)
    }

    /// cgroup v2's `memory.max`, else v1's `memory.limit_in_bytes`, for the cgroup this process is in.
    static func cgroupLimit() -> Int? {
        for file in ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"] {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { continue }
            if let bytes = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), bytes > 0 { return bytes }
        }
        return nil
    }
}

/// A size that would need more memory than the machine (or its cgroup, or the address-space limit) has left.
package struct MemoryError: Error, Equatable, CustomStringConvertible {
    package let what: String
    package let needed: Int, available: Int, total: Int

    package var description: String {
        "\(what) needs \(Self.gigabytes(needed)) of memory; \(Self.gigabytes(available)) of this machine's "
            + "\(Self.gigabytes(total)) (or its cgroup's or address-space limit) is left"
    }

    static func gigabytes(_ bytes: Int) -> String {
        bytes >= 1 << 30 ? String(format: "%.1f GB", Double(bytes) / 1_073_741_824)
            : String(format: "%.0f MB", Double(bytes) / 1_048_576)
    }
}
