import Foundation
import Inception
import InceptionEngine

/// Data parallelism over the ranks of an MPI job, as PyTorch's DistributedDataParallel and Horovod do it: every rank
/// holds the whole network, starts from rank 0's parameters, trains on its own share of each epoch, and averages
/// the gradients before every (identical) optimiser step.
///
/// - Shares: each epoch's shuffled order is the same on every rank (from the seed); rank r of N takes positions
///   r, r + N, r + 2N, … of it, padded with its first images to equal length (`DistributedSampler`). An image's
///   augmentation is drawn from (seed, epoch, position), never from the rank, so the global batch of a step is the
///   same images, augmented alike, whatever N.
/// - Gradients: summed in fused buckets of about `bucketFloats`, each started as soon as the backward pass has
///   finished every parameter in it (the backward pass walks the graph from the output, so the classifier's bucket
///   goes first) on the communicator's queue, while the backward pass goes on; then divided by N.
/// - Decisions every rank must take together (skip a step whose batch is too small or whose loss is not finite)
///   are agreed with one small sum, so the ranks' collectives never fall out of step.
final class GradientReducer {
    /// 25 MB of float32, PyTorch DDP's default bucket size.
    static let bucketFloats = 25 << 18

    let communicator: Communicator
    /// The trainable parameters each node owns.
    let owners: [Int: [String]]
    private var bucket: [(String, [Float])] = []
    private var bucketCount = 0
    private var reported = Set<String>()
    private var pending = Communicator.Pending()
    private var buckets = 0
    /// Seconds the step waited for the sums after its backward pass, and seconds the sums took in all: the
    /// fraction hidden behind the backward pass is 1 − waited / reducing.
    private(set) var waited = 0.0
    private(set) var reducing = 0.0

    init(_ communicator: Communicator, graph: Graph) {
        self.communicator = communicator
        var owners: [Int: [String]] = [:]
        for i in graph.nodes.indices {
            let names = graph.parameters(of: i).filter { !$0.isBuffer }.map(\.name)
            if !names.isEmpty { owners[i] = names }
        }
        self.owners = owners
    }

    /// Node `node`'s backward is done: its parameters' gradients join the bucket, which is sent once full.
    func nodeDone(_ node: Int, _ gradients: [String: [Float]]) {
        for name in owners[node] ?? [] where !reported.contains(name) {
            reported.insert(name)
            bucket.append((name, gradients[name]!))
            bucketCount += gradients[name]!.count
        }
        if bucketCount >= Self.bucketFloats { send() }
    }

    private func send() {
        guard !bucket.isEmpty else { return }
        buckets += 1
        communicator.startSum(bucket, into: pending, "the gradient sum of bucket \(buckets)")
        (bucket, bucketCount) = ([], 0)
    }

    /// The seconds counted since the last call (see `waited`), and a fresh count.
    func takeTimes() -> (reducing: Double, waited: Double) {
        defer { (reducing, waited) = (0, 0) }
        return (reducing, waited)
    }

    /// After the backward pass: sends what is left (parameters the pass did not reach too, in a fixed order),
    /// waits, and replaces `gradients` with the average over the ranks.
    func finish(_ gradients: inout [String: [Float]]) throws {
        for name in gradients.keys.sorted() where !reported.contains(name) {
            bucket.append((name, gradients[name]!))
        }
        send()
        let started = Date()
        let sums = try pending.wait()
        waited += Date().timeIntervalSince(started)
        reducing += pending.seconds
        let scale = 1 / Float(communicator.size)
        for (name, sum) in sums { gradients[name] = sum.map { $0 * scale } }
        (reported, pending, buckets) = ([], Communicator.Pending(), 0)
    }
}

/// An epoch's running sums: this rank's during the epoch, every rank's once `sum(over:)`.
struct Tally {
    var loss = 0.0, auxiliaryLoss = 0.0, correct = 0, seen = 0, skipped = 0, unreadable = 0
    /// Seconds the gradient sums took, and seconds the steps waited for them (with a communicator): this rank's own,
    /// not summed (the metrics report rank 0's).
    var reducing = 0.0, waited = 0.0
    var ranks: Int?

    mutating func add(_ result: TrainingGraph.StepResult, labels: [Int]) {
        loss += result.loss * Double(labels.count)
        auxiliaryLoss += (result.auxiliaryLoss ?? 0) * Double(labels.count)
        let k = result.logits.shape[1]
        for (b, label) in labels.enumerated() {
            let row = result.logits.scalars[(b * k)..<((b + 1) * k)]
            if row.firstIndex(of: row.max()!)! - b * k == label { correct += 1 }
        }
        seen += labels.count
    }

    /// Every rank's counts (skipped steps are agreed, so the same everywhere, and not summed).
    mutating func sum(over communicator: Communicator) throws {
        var values = [loss, auxiliaryLoss, Double(correct), Double(seen), Double(unreadable)]
        try communicator.sum(&values, "the epoch's metrics")
        (loss, auxiliaryLoss, correct, seen, unreadable) = (values[0], values[1], Int(values[2]), Int(values[3]),
                                                            Int(values[4]))
        ranks = communicator.size
    }

    func metrics(epoch: Int, steps: Int, auxiliary: Bool, validation: Double?, learningRate: Float,
                 seconds: Double) -> EpochMetrics {
        var metrics = EpochMetrics(epoch: epoch, steps: steps, trainLoss: seen == 0 ? .nan : loss / Double(seen),
                                   trainAccuracy: seen == 0 ? 0 : Double(correct) / Double(seen),
                                   trainAuxiliaryLoss: !auxiliary ? nil : seen == 0 ? .nan
                                    : auxiliaryLoss / Double(seen),
                                   validationAccuracy: validation, learningRate: learningRate,
                                   imagesPerSecond: Double(seen) / seconds, skippedBatches: skipped,
                                   skippedImages: unreadable)
        metrics.ranks = ranks
        if ranks != nil { (metrics.gradientSumSeconds, metrics.gradientWaitSeconds) = (reducing, waited) }
        return metrics
    }
}

extension Trainer {
    /// The positions of this rank's share of an epoch of `count` images (see `GradientReducer`): all of them
    /// without a communicator.
    func share(of count: Int) -> [Int] {
        let (ranks, rank) = (communicator?.size ?? 1, communicator?.rank ?? 0)
        let perRank = (count + ranks - 1) / ranks
        return (0..<perRank).map { rank + ranks * $0 }
    }

    /// Sums BatchNorm's statistics over the ranks (synchronised BatchNorm). A failure is kept for after the step:
    /// the communicator refuses every later collective with it, so the step's gradient sum throws it.
    static func replicaSum(_ communicator: Communicator) -> BatchNormTraining.ReplicaSum {
        { values in try? communicator.sum(&values, "a synchronised BatchNorm sum") }
    }

    /// Rank 0's BatchNorm running statistics (and those of its weight average) on every rank, at the end of an
    /// epoch: with per-replica BatchNorm each rank's differ, and the ranks validate their shares of the validation
    /// set with the model rank 0 saves (DDP broadcasts rank 0's buffers likewise).
    func shareRunningStatistics(_ communicator: Communicator) throws {
        let buffers = training.graph.parameters.filter(\.isBuffer).map(\.name)
        var values = Dictionary(uniqueKeysWithValues: buffers.map { ($0, training.values[$0]!) })
        try Self.broadcast(&values, communicator, "the running statistics")
        for (name, value) in values { training.values[name] = value }
        guard let average else { return }
        var averaged = Dictionary(uniqueKeysWithValues: buffers.compactMap { name in
            average.values[name].map { (name, $0) } })
        try Self.broadcast(&averaged, communicator, "the averaged running statistics")
        self.average = WeightAverage(decay: average.decay, values: average.values.merging(averaged) { $1 })
    }

    /// Rank 0's start (or saved run) on every rank: parameters, optimiser state, the step and epoch counts and the
    /// weight average. A rank's own reading of the run folder is never trusted.
    static func broadcastStart(_ communicator: Communicator, _ values: inout [String: [Float]],
                               _ optimizerState: inout [String: [Float]], _ counts: inout [Int],
                               _ average: inout WeightAverage?) throws {
        try broadcast(&values, communicator, "the parameters")
        try broadcast(&optimizerState, communicator, "the optimiser state")
        try communicator.broadcast(&counts, "the step count")
        if let decay = average?.decay, var averaged = average?.values {
            try broadcast(&averaged, communicator, "the weight average")
            average = WeightAverage(decay: decay, values: averaged)
        }
    }

    /// Rank 0's tensors on every rank, names and sizes included (a new run: the same start everywhere; a resumed
    /// one: the parameters and optimiser state rank 0 read from the run folder).
    static func broadcast(_ values: inout [String: [Float]], _ communicator: Communicator, _ what: String) throws {
        let operation = "the broadcast of \(what)"
        var header = Array((try? JSONEncoder.sorted.encode(values.mapValues(\.count))) ?? Data())
        var length = [header.count]
        try communicator.broadcast(&length, operation)
        header = header.count == length[0] ? header : [UInt8](repeating: 0, count: length[0])
        try communicator.broadcast(&header, operation)
        guard let counts = try? JSONDecoder().decode([String: Int].self, from: Data(header)) else {
            throw DistributedError.failed(rank: communicator.rank, operation: operation, reason: "unreadable names")
        }
        let names = counts.keys.sorted()
        var flat = communicator.isRoot ? names.flatMap { values[$0]! }
            : [Float](repeating: 0, count: names.reduce(0) { $0 + counts[$1]! })
        try communicator.broadcast(&flat, operation)
        var offset = 0
        values = [:]
        for name in names {
            values[name] = Array(flat[offset..<(offset + counts[name]!)])
            offset += counts[name]!
        }
    }
}
