import Foundation
import Inception
import InceptionEngine
import InceptionIO

/// The training loop: epochs of augmented batches, the optimiser and schedule, validation, metrics, and
/// checkpoints a killed run resumes from.
///
/// Run folder:
///   config.json                       the configuration (written once)
///   model.safetensors                 latest weights, the released key names (timm loads it strictly)
///   auxiliary.safetensors             the auxiliary classifier's weights, when it is trained (our names)
///   average.safetensors               the moving average of the weights, when enabled
///   optimizer.safetensors             optimiser state (momentum buffers, mean squares), step count in metadata
///   state.json                        the last completed epoch; written last, so it always names complete files
///   metrics.jsonl                     one `EpochMetrics` per line
///   curves.svg                        loss and accuracy by epoch
/// Every file is written to a temporary name and renamed, so a kill leaves the previous epoch's files intact.
/// Everything random is drawn from (seed, epoch, position), so a resumed run repeats an uninterrupted one exactly.
public final class Trainer {
    public let configuration: TrainingConfiguration
    public let name: ModelName
    /// The network as checkpointed and validated; `training.graph` is the same with the auxiliary head, if any.
    package let graph: Graph
    package let training: TrainingGraph
    /// The auxiliary head's part of `training.graph`, when it is trained: its parameters are checkpointed apart
    /// (`auxiliary.safetensors`) and never averaged.
    let auxiliaryHead: Graph?
    let optimizer: Optimizer
    var average: WeightAverage?
    let trainSet: ImageFolder
    let validationSet: ImageFolder?
    let run: URL
    public private(set) var completedEpochs = 0
    public internal(set) var history: [EpochMetrics] = []
    public var threads = Parallel.defaultThreads
    /// The MPI job this trainer is a rank of (`DataParallel.swift`); nil: it trains alone. Only rank 0 writes the
    /// run folder.
    public let communicator: Communicator?
    /// Sums the gradients over the ranks during the backward pass.
    let reducer: GradientReducer?
    /// With a communicator: BatchNorm normalises with the statistics of every rank's batch together (the global
    /// batch), instead of each rank's own.
    public var syncBatchNorm = false {
        didSet { training.batchNormReplicas = syncBatchNorm ? communicator.map(Self.replicaSum) : nil }
    }

    /// A new run (`initial`: values by graph name) or, with `resume`, the run saved in `run`. A folder that already
    /// holds a run is refused for a new one unless `overwrite` (which deletes that run's files, nothing else).
    public init(_ configuration: TrainingConfiguration, train: ImageFolder, validation: ImageFolder?, run: URL,
                initial: [String: [Float]]?, resume: Bool, overwrite: Bool = false,
                communicator: Communicator? = nil) throws {
        let name = configuration.model
        guard train.samples.count >= configuration.batchSize else {
            throw TrainingError.tooFewImages(count: train.samples.count, batch: configuration.batchSize)
        }
        (self.configuration, self.name, self.trainSet, self.validationSet, self.run) = (configuration, name, train,
            validation, run)
        self.communicator = communicator
        let reads = communicator?.isRoot ?? true
        graph = name.graph(classes: configuration.classes.count, repeats: configuration.repeats)
        let trainingGraph = try Self.graphWithAuxiliaryHead(configuration, name) ?? graph
        try TrainingGraph.checkMemory(trainingGraph, batch: configuration.batchSize, size: configuration.inputSize)
        auxiliaryHead = configuration.auxiliaryWeight == nil ? nil
            : trainingGraph.subgraph(stage: OutputName.auxLogits.rawValue)!
        if reads { try Self.prepare(run, resume: resume, overwrite: overwrite) }
        var values: [String: [Float]]
        var optimizerState: [String: [Float]] = [:], steps = 0
        if resume && reads {
            let saved = try Self.savedRun(run, configuration, graph: graph, trainingGraph: trainingGraph,
                                          auxiliaryHead: auxiliaryHead != nil)
            (values, optimizerState, steps, completedEpochs) = (saved.values, saved.optimizerState, saved.steps,
                                                                saved.epoch)
            (average, history) = (saved.average, saved.history)
        } else {
            values = initial ?? ModelName.initialValues(trainingGraph, seed: configuration.seed)
            // Released weights have no auxiliary head: it starts fresh.
            if initial != nil, let auxiliaryHead {
                values.merge(ModelName.initialValues(auxiliaryHead, seed: configuration.seed)) { a, _ in a }
            }
            if reads {
                try Self.writeAtomically(try JSONEncoder.pretty.encode(configuration),
                                         to: run.appendingPathComponent("config.json"))
            }
            if let decay = configuration.averageDecay {
                // The average is for validation: the network's parameters, not the auxiliary head's.
                let network = Set(graph.parameters.map(\.name))
                average = WeightAverage(decay: decay, values: values.filter { network.contains($0.key) })
            }
        }
        if let communicator {
            var counts = [steps, completedEpochs]
            try Self.broadcastStart(communicator, &values, &optimizerState, &counts, &average)
            (steps, completedEpochs) = (counts[0], counts[1])
        }
        reducer = communicator.map { GradientReducer($0, graph: trainingGraph) }
        training = TrainingGraph(graph: trainingGraph, values: values)
        training.batchNormMomentum = configuration.batchNormMomentum
        training.dropoutRate = configuration.dropout
        optimizer = Optimizer(configuration.optimizer, parameters: trainingGraph.parameters, state: optimizerState,
                              steps: steps)
        if let reducer {
            training.nodeBackwardDone = { [unowned training] node in reducer.nodeDone(node, training.gradients) }
        }
    }

    /// The network with the auxiliary head, when the configuration asks for it (refused for networks without one, and
    /// for input sizes that do not give it its 1×1 output); nil when it does not.
    static func graphWithAuxiliaryHead(_ c: TrainingConfiguration, _ name: ModelName) throws -> Graph? {
        guard c.auxiliaryWeight != nil else { return nil }
        guard name.spec.auxiliaryHead else { throw TrainingError.noAuxiliaryHead(model: name.rawValue) }
        let graph = name.graph(classes: c.classes.count, repeats: c.repeats, auxiliaryHead: true)
        guard graph.inferShapes(n: 1, h: c.inputSize, w: c.inputSize) != nil else {
            let sizes = (1...1024).filter { graph.inferShapes(n: 1, h: $0, w: $0) != nil }
            throw TrainingError.auxiliaryHeadInputSize(size: c.inputSize, sizes: sizes.first.map { $0...sizes.last! })
        }
        return graph
    }

    /// Optimiser steps per epoch (of this rank's share, with a communicator).
    public var stepsPerEpoch: Int { share(of: trainSet.samples.count).count / configuration.batchSize }

    /// Trains the remaining epochs. `progress` after every step; `epochDone` after every epoch's checkpoint.
    /// `unreadableImage(path, reason)` for every image left out under `skipUnreadable`; `warning` when the loss
    /// looks like diverging (once per epoch; an epoch that ends diverged throws `TrainingError.diverged`).
    /// With a communicator, the per-step figures are this rank's and the epoch's metrics every rank's.
    public func train(progress: (TrainingProgress) -> Void = { _ in },
                      unreadableImage: (String, String) -> Void = { _, _ in },
                      warning: (String) -> Void = { _ in },
                      epochDone: (EpochMetrics) -> Void = { _ in }) throws {
        let c = configuration
        var watch = DivergenceWatch(classes: c.classes.count)
        try validateUnfinishedEpoch(unreadableImage: unreadableImage)
        for epoch in stride(from: completedEpochs + 1, through: c.epochs, by: 1) {
            let (order, positions, steps) = (shuffled(epoch: epoch), share(of: trainSet.samples.count), stepsPerEpoch)
            func batch(_ step: Int) -> Pending {
                prefetch(order, positions: Array(positions[(step * c.batchSize)..<((step + 1) * c.batchSize)]),
                         epoch: epoch)
            }
            var tally = Tally()
            let started = Date()
            var lr: Float = 0
            // Decoding the next batch runs beside the current step.
            var next = batch(0)
            for step in 0..<steps {
                let (input, labels, left) = try next.wait()
                if step + 1 < steps { next = batch(step + 1) }
                for (path, reason) in left { unreadableImage(path, reason) }
                tally.unreadable += left.count
                lr = c.schedule.rate(epoch: Float(epoch - 1) + Float(step) / Float(steps))
                guard let result = try optimise(input, labels, epoch: epoch, step: step, learningRate: lr) else {
                    tally.skipped += 1
                    continue
                }
                if let message = watch.batch(loss: result.loss, logits: result.logits, epoch: epoch, step: step + 1) {
                    warning(message)
                }
                tally.add(result, labels: labels)
                progress(TrainingProgress(
                    epoch: epoch, epochs: c.epochs, step: step + 1, steps: steps, loss: tally.loss / Double(tally.seen),
                    accuracy: Double(tally.correct) / Double(tally.seen),
                    imagesPerSecond: Double(tally.seen) / Date().timeIntervalSince(started), learningRate: lr))
            }
            training.releaseBuffers()  // the step's maps are not needed until the next epoch
            if let communicator, let reducer {
                try tally.sum(over: communicator)
                (tally.reducing, tally.waited) = reducer.takeTimes()
                try shareRunningStatistics(communicator)
            }
            let metrics = tally.metrics(epoch: epoch, steps: optimizer.steps, auxiliary: c.auxiliaryWeight != nil,
                                        validation: nil, learningRate: lr, seconds: Date().timeIntervalSince(started))
            try watch.check(epoch: epoch, meanLoss: metrics.trainLoss)
            // The weights and the epoch's training figures are saved before validation runs: a run stopped there
            // resumes from this epoch, and validates it first (`validateUnfinishedEpoch`).
            history.append(metrics)
            if communicator?.isRoot ?? true { try checkpoint(epoch: epoch) }
            completedEpochs = epoch
            try validateUnfinishedEpoch(unreadableImage: unreadableImage)
            epochDone(history[history.count - 1])
        }
    }

    /// The epoch's order of the training images: the same on every rank, from the seed.
    func shuffled(epoch: Int) -> [Int] {
        var order = Array(trainSet.samples.indices)
        var shuffle = SplitMix64(configuration.seed &+ UInt64(epoch) &* 0x9E37_79B9)
        for i in stride(from: order.count - 1, to: 0, by: -1) {
            order.swapAt(i, Int(shuffle.next() % UInt64(i + 1)))
        }
        return order
    }

    /// One optimiser step on a batch, with the gradients averaged over the ranks; nil when the step is skipped (a
    /// batch of fewer than two images, which BatchNorm cannot normalise, or a non-finite loss under
    /// `skipNonFinite`), on every rank alike.
    func optimise(_ input: Tensor, _ labels: [Int], epoch: Int, step: Int, learningRate: Float) throws
        -> TrainingGraph.StepResult?
    {
        let c = configuration
        let tooSmall = labels.count < 2
        if try communicator?.any(tooSmall, "the agreement on step \(step + 1)") ?? tooSmall { return nil }
        let result = try training.step(input, labels: labels, labelSmoothing: c.labelSmoothing,
                                       auxiliary: c.auxiliaryWeight.map { (.auxLogits, $0) },
                                       seed: c.seed ^ (UInt64(epoch) << 32 | UInt64(step)), threads: threads)
        var gradients = training.gradients
        try reducer?.finish(&gradients)
        let nonFinite = !result.total.isFinite
        if try communicator?.any(nonFinite, "the agreement on step \(step + 1)'s loss") ?? nonFinite {
            if c.skipNonFinite { return nil }
            throw TrainingError.nonFiniteLoss(epoch: epoch, step: step + 1)
        }
        if let maxNorm = c.clipNorm { clipGradients(&gradients, maxNorm: maxNorm) }
        optimizer.step(&training.values, gradients: gradients, learningRate: learningRate)
        average?.update(training.values)
        return result
    }

    /// A batch being decoded: the input, its labels, and the images left out as (path, reason).
    final class Pending: @unchecked Sendable {
        typealias Batch = (input: Tensor, labels: [Int], unreadable: [(String, String)])
        let done = DispatchSemaphore(value: 0)
        var result: Result<Batch, Error>?
        func wait() throws -> Batch { done.wait(); return try result!.get() }
    }

    /// Decodes and augments the images at `positions` of `epoch`'s order on a background thread (a position past
    /// the end wraps around: a rank's share is padded). Each image's augmentation is drawn from (seed, epoch,
    /// position). An undecodable image ends the run with the decoder's error, or under `skipUnreadable` is left
    /// out of the batch.
    func prefetch(_ order: [Int], positions: [Int], epoch: Int) -> Pending {
        let pending = Pending()
        let (c, samples, preprocessing) = (configuration, trainSet.samples, name.spec.preprocessing)
        Thread.detachNewThread {
            pending.result = Result {
                var pixels: [Float] = [], labels: [Int] = [], unreadable: [(String, String)] = []
                for position in positions {
                    let sample = samples[order[position % order.count]]
                    let image: RGBImage
                    do {
                        image = try RGBImage(contentsOf: URL(fileURLWithPath: sample.path))
                    } catch where c.skipUnreadable {
                        unreadable.append((sample.path, "\(error)"))
                        continue
                    }
                    var rng = SplitMix64(c.seed &+ UInt64(epoch) &* 1_000_003 &+ UInt64(position) &* 7919)
                    pixels += c.augmentation.apply(image, size: c.inputSize, preprocessing: preprocessing, rng: &rng)
                    labels.append(sample.label)
                }
                return (Tensor(shape: [labels.count, c.inputSize, c.inputSize, 3], scalars: pixels), labels, unreadable)
            }
            pending.done.signal()
        }
        return pending
    }

    /// Top-1 accuracy of the averaged weights (or the current ones) with the model's eval transform; with a
    /// communicator each rank validates every N-th image and the counts are summed.
    /// Under `skipUnreadable`, images that cannot be decoded are reported and left out of the count.
    func validate(_ data: ImageFolder, unreadableImage: (String, String) -> Void) throws -> Double {
        let values = average?.values ?? training.values
        let compiled = try CompiledGraph(graph: graph, usualInputSize: configuration.inputSize) { values[$0]! }
        var (correct, count) = (0, 0)
        let batch = 16
        let (ranks, rank) = (communicator?.size ?? 1, communicator?.rank ?? 0)
        let samples = data.samples.indices.filter { $0 % ranks == rank }.map { data.samples[$0] }
        for first in stride(from: 0, to: samples.count, by: batch) {
            var images: [RGBImage] = [], labels: [Int] = []
            for sample in samples[first..<min(samples.count, first + batch)] {
                do {
                    images.append(try RGBImage(contentsOf: URL(fileURLWithPath: sample.path)))
                } catch where configuration.skipUnreadable {
                    unreadableImage(sample.path, "\(error)")
                    continue
                }
                labels.append(sample.label)
            }
            guard !images.isEmpty else { continue }
            let input = name.spec.preprocessing.batch(images, inputSize: configuration.inputSize)
            // The logits, whatever the primary output (the face model's is the normalised embedding).
            let logits = try compiled.run(input, output: graph.outputs[.logits], threads: threads)
            let k = logits.shape.last!
            for (b, label) in labels.enumerated() {
                let row = Array(logits.scalars[(b * k)..<((b + 1) * k)])
                if row.firstIndex(of: row.max()!)! == label { correct += 1 }
            }
            count += labels.count
        }
        if let communicator {
            var counts = [Double(correct), Double(count)]
            try communicator.sum(&counts, "the validation counts")
            (correct, count) = (Int(counts[0]), Int(counts[1]))
        }
        return count == 0 ? 0 : Double(correct) / Double(count)
    }
}
