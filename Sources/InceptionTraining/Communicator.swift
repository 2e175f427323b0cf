import CInceptionMPI
import Foundation

public enum DistributedError: Error, Equatable, CustomStringConvertible {
    case unavailable(String)
    case failed(rank: Int, operation: String, reason: String)
    /// A collective that did not complete in time: another rank stopped or hangs.
    case timedOut(rank: Int, operation: String, seconds: Int)

    public var description: String {
        switch self {
        case let .unavailable(reason): return "data-parallel training needs MPI: \(reason)"
        case let .failed(rank, operation, reason): return "rank \(rank): \(operation) failed: \(reason)"
        case let .timedOut(rank, operation, seconds):
            return "rank \(rank): no answer from the other ranks in \(seconds) s during \(operation); "
                + "another rank has stopped or hangs"
        }
    }
}

/// The ranks of an `mpirun` job, through Open MPI loaded at run time. Every collective runs on one serial queue
/// (MPI is initialised for serialised calls), so gradient buckets can be reduced while the backward pass goes on;
/// a collective that takes longer than `timeout` ends the process with one line, so a rank that dies or hangs
/// never leaves the others waiting.
public final class Communicator: @unchecked Sendable {
    public let rank: Int
    public let size: Int
    public var isRoot: Bool { rank == 0 }
    let queue = DispatchQueue(label: "inception.mpi")
    let timeout: Int
    private let watchdog = Watchdog()

    /// The job this process is a rank of, when started by Open MPI's `mpirun` with more than one rank; nil
    /// otherwise (no MPI is loaded then).
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment)
        throws -> Communicator?
    {
        guard let size = environment["OMPI_COMM_WORLD_SIZE"].flatMap(Int.init), size > 1 else { return nil }
        let timeout = environment["INCEPTION_MPI_TIMEOUT"].flatMap(Int.init) ?? 50
        return try Communicator(timeout: timeout)
    }

    private init(timeout: Int) throws {
        var error = [CChar](repeating: 0, count: 512)
        guard inception_mpi_load(&error, error.count) == 0 else {
            throw DistributedError.unavailable(Self.text(error))
        }
        var (rank, size): (Int32, Int32) = (0, 0)
        let status = inception_mpi_init(&rank, &size)
        guard status == 0 else {
            throw DistributedError.failed(rank: 0, operation: "MPI_Init", reason: Self.describe(status))
        }
        (self.rank, self.size, self.timeout) = (Int(rank), Int(size), timeout)
        watchdog.start { [rank = self.rank, timeout] operation in
            let error = DistributedError.timedOut(rank: rank, operation: operation, seconds: timeout)
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            exit(1)
        }
    }

    static func describe(_ status: Int32) -> String {
        var text = [CChar](repeating: 0, count: 1024)
        inception_mpi_error_string(status, &text, text.count)
        return Self.text(text)
    }

    /// A C string in a buffer.
    static func text(_ chars: [CChar]) -> String {
        String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Runs `body` (an MPI call) on the communication queue, under the watchdog.
    private func collective(_ operation: String, _ body: () -> Int32) throws {
        try queue.sync { try call(operation, body) }
    }

    /// `body`, an MPI call, on the communication queue (the caller's), under the watchdog.
    private func call(_ operation: String, _ body: () -> Int32) throws {
        watchdog.begin(operation, seconds: timeout)
        defer { watchdog.end() }
        let status = body()
        guard status == 0 else {
            throw DistributedError.failed(rank: rank, operation: operation, reason: Self.describe(status))
        }
    }

    /// Every rank's `values` summed, in place.
    public func sum(_ values: inout [Float], _ operation: String = "a sum") throws {
        try values.withUnsafeMutableBufferPointer { v in
            try collective(operation) { inception_mpi_sum_floats(v.baseAddress, v.count) }
        }
    }

    public func sum(_ values: inout [Double], _ operation: String = "a sum") throws {
        try values.withUnsafeMutableBufferPointer { v in
            try collective(operation) { inception_mpi_sum_doubles(v.baseAddress, v.count) }
        }
    }

    /// Rank `root`'s `values` on every rank (the count must agree).
    public func broadcast<T: BitwiseCopyable>(_ values: inout [T], from root: Int = 0,
                                              _ operation: String = "a broadcast") throws {
        try values.withUnsafeMutableBytes { v in
            try collective(operation) { inception_mpi_broadcast(v.baseAddress, v.count, Int32(root)) }
        }
    }

    public func barrier(_ operation: String = "a barrier") throws {
        try collective(operation) { inception_mpi_barrier() }
    }

    /// Whether any rank says `flag` (a decision every rank must take together, such as skipping a step).
    public func any(_ flag: Bool, _ operation: String) throws -> Bool {
        var value = [flag ? 1.0 : 0.0]
        try sum(&value, operation)
        return value[0] > 0
    }

    /// Leaves MPI once every rank is done.
    public func finish() {
        queue.sync { _ = inception_mpi_finalize() }
    }

    /// Sums on the communication queue while the caller goes on; `wait` returns the results in submission order.
    public final class Pending: @unchecked Sendable {
        let group = DispatchGroup()
        var results: [(String, [Float])] = []
        var error: Error?
        /// Seconds the sums took on the communication queue.
        var seconds = 0.0
        let lock = NSLock()

        public func wait() throws -> [(String, [Float])] {
            group.wait()
            if let error { throw error }
            return results
        }
    }

    /// Starts summing `tensors` (name, values) over the ranks in one fused buffer; returns at once.
    public func startSum(_ tensors: [(String, [Float])], into pending: Pending, _ operation: String) {
        pending.group.enter()
        queue.async { [self] in
            defer { pending.group.leave() }
            let started = Date()
            defer { pending.lock.withLock { pending.seconds += Date().timeIntervalSince(started) } }
            var fused = tensors.flatMap(\.1)
            do {
                try fused.withUnsafeMutableBufferPointer { v in
                    try call(operation) { inception_mpi_sum_floats(v.baseAddress, v.count) }
                }
            } catch {
                pending.lock.withLock { pending.error = error }
                return
            }
            var offset = 0
            var out: [(String, [Float])] = []
            for (name, values) in tensors {
                out.append((name, Array(fused[offset..<(offset + values.count)])))
                offset += values.count
            }
            pending.lock.withLock { pending.results += out }
        }
    }
}

/// Ends the process when one collective runs past its deadline (checked every half second on its own thread).
final class Watchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var current: (operation: String, deadline: Date)?

    func start(_ expired: @escaping @Sendable (String) -> Void) {
        Thread.detachNewThread { [self] in
            while true {
                Thread.sleep(forTimeInterval: 0.5)
                let late = lock.withLock { current.flatMap { $0.deadline < Date() ? $0.operation : nil } }
                if let late { expired(late) }
            }
        }
    }

    func begin(_ operation: String, seconds: Int) {
        lock.withLock { current = (operation, Date().addingTimeInterval(Double(seconds))) }
    }

    func end() { lock.withLock { current = nil } }
}
