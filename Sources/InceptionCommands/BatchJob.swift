import ArgumentParser
import Foundation
import InceptionIO
import InceptionTraining

/// A batch command (`embed`, `predict`, `eval`, `classify`) spread over the ranks of an `mpirun` job, as
/// torch.distributed's inference scripts do: rank r of N takes the r-th contiguous shard of the inputs (the first
/// count mod N ranks one input more). The job goes in rounds: every rank runs the next inputs of its shard, then
/// rank 0 gathers the round's results and alone writes, prints and reports them — so the output is one file in
/// input order, as one process writes it, whatever N. A rank whose round failed sends its error line instead: rank 0
/// reports the first (in input order) and every rank stops after that round. Without `mpirun`, or with one rank,
/// the job is this process alone and nothing is exchanged.
struct BatchJob {
    let communicator: Communicator?
    var rank: Int { communicator?.rank ?? 0 }
    var ranks: Int { communicator?.size ?? 1 }
    /// The rank that writes, prints and reports.
    var isRoot: Bool { rank == 0 }

    /// The job this process is a rank of (alone without `mpirun`). Rank 0 will say, if a signal ends it (mpirun
    /// stops every rank when one dies), that the job was stopped; its partial output is removed either way.
    static func fromEnvironment() throws -> BatchJob {
        let job = BatchJob(communicator: try Communicator.fromEnvironment())
        if job.ranks > 1 && job.isRoot {
            PartialFiles.sayOnSignal("error: the job was stopped by a signal (mpirun stops every rank when one ends); "
                                     + "no output was written")
        }
        return job
    }

    /// Rank `rank`'s contiguous share of `count` inputs.
    func shard(of count: Int, rank: Int) -> Range<Int> {
        let (base, extra) = count.quotientAndRemainder(dividingBy: ranks)
        let start = rank * base + min(rank, extra)
        return start..<(start + base + (rank < extra ? 1 : 0))
    }

    /// The inputs of round `round` in `shard`, `step` per round (empty once the shard is done).
    static func inputs(of shard: Range<Int>, round: Int, step: Int) -> Range<Int> {
        let start = min(shard.upperBound, shard.lowerBound + round * step)
        return start..<min(shard.upperBound, start + step)
    }

    /// `body`'s value on every rank once every rank has run it (loading the model, opening the output): when it
    /// fails on any rank, rank 0 reports the first failure and every rank stops.
    func together<T>(_ operation: String, _ body: () throws -> T) throws -> T {
        guard communicator != nil else { return try body() }
        let result = Result { try body() }
        var message: [UInt8] = [0]
        if case let .failure(error) = result { message = [1] + Array(errorLine(error).utf8) }
        try exchange(message, operation) { _ in }
        return try result.get()
    }

    /// Runs `count` inputs, at most `step` per rank and round: `work` turns a run of input positions (possibly
    /// empty) into bytes on every rank; `collect`, on rank 0 only, receives each rank's bytes with the positions they
    /// cover — as the rounds bring them (rank 0's first run, rank 1's first run, …: an output that places rows by
    /// position), or with `inOrder` in input order (printed results: rank 0 holds the later ranks' until their turn).
    /// On a rank other than 0 an error ends the job quietly (`ExitCode(1)`, rank 0 has said it).
    func run(count: Int, step: Int, inOrder: Bool = false, work: (Range<Int>) throws -> [UInt8],
             collect: (Range<Int>, [UInt8]) throws -> Void) throws {
        guard inOrder && ranks > 1 else { return try rounds(count: count, step: step, work: work, collect: collect) }
        var next = 0
        var waiting: [Int: (Range<Int>, [UInt8])] = [:]
        try rounds(count: count, step: step, work: work) { inputs, bytes in
            waiting[inputs.lowerBound] = (inputs, bytes)
            while let (inputs, bytes) = waiting.removeValue(forKey: next) {
                try collect(inputs, bytes)
                next = inputs.upperBound
            }
        }
    }

    /// `run` with every rank's bytes collected as the rounds bring them.
    private func rounds(count: Int, step: Int, work: (Range<Int>) throws -> [UInt8],
                        collect: (Range<Int>, [UInt8]) throws -> Void) throws {
        guard let communicator else {
            for start in stride(from: 0, to: count, by: step) {
                let inputs = start..<min(count, start + step)
                try collect(inputs, try work(inputs))
            }
            return
        }
        let rounds = (shard(of: count, rank: 0).count + step - 1) / step
        for round in 0..<rounds {
            let mine = Self.inputs(of: shard(of: count, rank: rank), round: round, step: step)
            var message: [UInt8]
            do { message = [0] + (try work(mine)) } catch { message = [1] + Array(errorLine(error).utf8) }
            try exchange(message, "round \(round + 1) of \(rounds)") { messages in
                for (r, message) in messages.enumerated() {
                    let inputs = Self.inputs(of: shard(of: count, rank: r), round: round, step: step)
                    if !inputs.isEmpty { try collect(inputs, Array(message.dropFirst())) }
                }
            }
        }
        communicator.finish()
    }

    /// Every rank's `message` (a status byte, 0 for done, then its bytes or its error line) to rank 0, which runs
    /// `collect` on them in rank order when none failed; then every rank learns from rank 0 whether to go on. A
    /// failure — a rank's, or rank 0's own in `collect` — ends the job on every rank: rank 0 throws the first error,
    /// the others `ExitCode(1)`.
    private func exchange(_ message: [UInt8], _ operation: String, collect: ([[UInt8]]) throws -> Void) throws {
        guard let communicator else { return }
        let messages = try communicator.gather(message, operation)
        var stop: [UInt8] = [0]
        var failure: Error?
        if isRoot {
            do {
                if let failed = messages.first(where: { $0.first != 0 }) {
                    throw CLIError(String(decoding: failed.dropFirst(), as: UTF8.self))
                }
                try collect(messages)
            } catch { (stop, failure) = ([1], error) }
        }
        try communicator.broadcast(&stop, operation)
        guard stop[0] == 0 else {
            communicator.finish()
            throw failure ?? ExitCode(1)
        }
    }
}
