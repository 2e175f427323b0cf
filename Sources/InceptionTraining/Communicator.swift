import CInceptionMPI
import Foundation
import InceptionEngine

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
/// (MPI is initialised for serialised calls), so gradient buckets can be reduced while the backward pass goes on.
/// A collective that takes longer than `timeout` throws `DistributedError.timedOut` (a rank that dies or hangs
/// never leaves the others waiting), and so does every call after it: MPI cannot take back a call in progress, so
/// the communicator is done once one has failed. Each collective works on a copy that it owns, so a call left
/// behind in MPI never writes into the caller's memory.
public final class Communicator: @unchecked Sendable {
    public let rank: Int
    public let size: Int
    public var isRoot: Bool { rank == 0 }
    let queue = DispatchQueue(label: "inception.mpi")
    let timeout: Int
    /// The first collective that failed or ran past its time: every later one throws it.
    private let failure = Locked<DistributedError?>(nil)

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

    /// `values` after `body` (an MPI call on a copy of their bytes) ran on the communication queue, waited for at
    /// most `timeout` seconds.
    private func collective<T: BitwiseCopyable>(_ operation: String, _ values: [T],
                                                _ body: @escaping @Sendable (UnsafeMutableRawBufferPointer) -> Int32)
        throws -> [T]
    {
        let copy = Owned(values)
        let pending = Pending()
        pending.group.enter()
        queue.async { [self] in
            defer { pending.group.leave() }
            do { try call(operation) { copy.values.withUnsafeMutableBytes(body) } } catch {
                pending.lock.withLock { pending.error = error }
            }
        }
        _ = try wait(pending, operation)
        return copy.values
    }

    /// `body`, an MPI call, on the communication queue (the caller's); refused at once after a failure.
    private func call(_ operation: String, _ body: () -> Int32) throws {
        if let earlier = failure.withLock({ $0 }) { throw earlier }
        let status = body()
        guard status == 0 else {
            throw failed(.failed(rank: rank, operation: operation, reason: Self.describe(status)))
        }
    }

    /// `error`, kept as the communicator's failure unless an earlier one is.
    private func failed(_ error: DistributedError) -> DistributedError {
        failure.withLock { $0 = $0 ?? error }
        return error
    }

    /// `pending`'s results once its sums are done, or `timedOut` after `timeout` seconds.
    private func wait(_ pending: Pending, _ operation: String) throws -> [(String, [Float])] {
        guard pending.group.wait(timeout: .now() + .seconds(timeout)) == .success else {
            throw failed(.timedOut(rank: rank, operation: operation, seconds: timeout))
        }
        if let error = pending.lock.withLock({ pending.error }) { throw error }
        return pending.results
    }

    /// Every rank's `values` summed, in place.
    public func sum(_ values: inout [Float], _ operation: String = "a sum") throws {
        values = try collective(operation, values) {
            inception_mpi_sum_floats($0.baseAddress?.assumingMemoryBound(to: Float.self), $0.count / 4)
        }
    }

    public func sum(_ values: inout [Double], _ operation: String = "a sum") throws {
        values = try collective(operation, values) {
            inception_mpi_sum_doubles($0.baseAddress?.assumingMemoryBound(to: Double.self), $0.count / 8)
        }
    }

    /// Rank `root`'s `values` on every rank (the count must agree).
    public func broadcast<T: BitwiseCopyable>(_ values: inout [T], from root: Int = 0,
                                              _ operation: String = "a broadcast") throws {
        values = try collective(operation, values) {
            inception_mpi_broadcast($0.baseAddress, $0.count, Int32(root))
        }
    }

    /// Every rank's `bytes` on rank `root`, in rank order (empty on the other ranks); the ranks' counts may differ.
    public func gather(_ bytes: [UInt8], to root: Int = 0, _ operation: String = "a gather") throws -> [[UInt8]] {
        var counts = [Int64](repeating: 0, count: size)
        counts[rank] = Int64(bytes.count)
        counts = try collective(operation, counts) {
            inception_mpi_sum_longs($0.baseAddress?.assumingMemoryBound(to: Int64.self), $0.count / 8)
        }
        let total = rank == root ? Int(counts.reduce(0, +)) : 0
        let received = try collective(operation, [UInt8](repeating: 0, count: total)) { [counts] all in
            counts.withUnsafeBufferPointer { counts in
                bytes.withUnsafeBytes { mine in
                    inception_mpi_gather(mine.baseAddress, mine.count, all.baseAddress, counts.baseAddress,
                                         Int32(root))
                }
            }
        }
        guard rank == root else { return [] }
        var offset = 0
        return counts.map { count in
            defer { offset += Int(count) }
            return Array(received[offset..<(offset + Int(count))])
        }
    }

    public func barrier(_ operation: String = "a barrier") throws {
        _ = try collective(operation, [UInt8]()) { _ in inception_mpi_barrier() }
    }

    /// Whether any rank says `flag` (a decision every rank must take together, such as skipping a step).
    public func any(_ flag: Bool, _ operation: String) throws -> Bool {
        var value = [flag ? 1.0 : 0.0]
        try sum(&value, operation)
        return value[0] > 0
    }

    /// Leaves MPI once every rank is done (not after a failure: a call may still be inside MPI).
    public func finish() {
        guard failure.withLock({ $0 }) == nil else { return }
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
        /// The communicator that sums and the latest sum's name, once a sum is started.
        var communicator: Communicator?
        var operation = "a sum"

        /// The sums, once done; `DistributedError.timedOut` when they take longer than the communicator's timeout.
        public func wait() throws -> [(String, [Float])] {
            guard let communicator else { return results }
            return try communicator.wait(self, operation)
        }
    }

    /// Starts summing `tensors` (name, values) over the ranks in one fused buffer; returns at once.
    public func startSum(_ tensors: [(String, [Float])], into pending: Pending, _ operation: String) {
        pending.group.enter()
        (pending.communicator, pending.operation) = (self, operation)
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

/// Values a collective owns while MPI may still be writing them.
private final class Owned<T>: @unchecked Sendable {
    var values: [T]
    init(_ values: [T]) { self.values = values }
}
