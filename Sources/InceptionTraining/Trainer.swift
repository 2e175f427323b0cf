import Foundation
import Inception
import InceptionIO

/// Everything that defines a training run; saved as `config.json` in the run folder so that `--resume` continues
/// the same run.
public struct TrainingConfiguration: Sendable, Codable, Equatable {
    public var model: ModelName
    public var classes: [String]
    public var inputSize: Int
    public var epochs: Int
    public var batchSize: Int
    public var optimizer: OptimizerSettings
    public var schedule: LearningRateSchedule
    public var labelSmoothing: Float = 0.1
    public var clipNorm: Float?
    /// Decay of the exponential moving average of the weights used for validation; nil: no average.
    public var averageDecay: Float?
    /// PyTorch's BatchNorm momentum (0.1); TF-slim's decay 0.9997 is 0.0003.
    public var batchNormMomentum: Float = 0.1
    /// Replaces the graph's dropout rate.
    public var dropout: Float?
    public var seed: UInt64
    /// A batch whose loss is NaN or infinite is skipped (and counted) instead of stopping the run.
    public var skipNonFinite = false
    /// A training image that cannot be decoded is left out of its batch (and reported) instead of stopping the run.
    public var skipUnreadable = false
    /// The random crop and flip of training images.
    public var augmentation = Augmentation()
    /// Blocks in the A, B and C stages for a reduced-depth network (experiments); nil: the network's own.
    public var repeats: [Int]?
    /// Train with TF-slim's auxiliary classifier, its loss added with this weight (TF-slim's 0.4); nil: without.
    /// Its weights are kept in `auxiliary.safetensors`, out of the checkpoint timm loads.
    public var auxiliaryWeight: Float?

    public init(model: ModelName, classes: [String], inputSize: Int, epochs: Int, batchSize: Int,
                optimizer: OptimizerSettings,
                schedule: LearningRateSchedule, seed: UInt64) {
        (self.model, self.classes, self.inputSize, self.epochs, self.batchSize) = (model, classes, inputSize, epochs,
            batchSize)
        (self.optimizer, self.schedule, self.seed) = (optimizer, schedule, seed)
    }
}

/// One line of `metrics.jsonl`, written at the end of every epoch.
extension EpochMetrics {
    /// This epoch as one line of JSON, keys sorted: a line of `metrics.jsonl`, and of `inception train --json`.
    public func jsonLine() throws -> String { String(decoding: try JSONEncoder.sorted.encode(self), as: UTF8.self) }
}

public struct EpochMetrics: Sendable, Codable, Equatable {
    public var epoch: Int
    public var steps: Int
    /// The main classifier's loss (without the auxiliary one, so that runs with and without it compare).
    public var trainLoss: Double
    public var trainAccuracy: Double
    /// The auxiliary classifier's loss, when it is trained.
    public var trainAuxiliaryLoss: Double?
    public var validationAccuracy: Double?
    public var learningRate: Float
    public var imagesPerSecond: Double
    public var skippedBatches: Int
    /// Training images left out because they could not be decoded (`skipUnreadable`).
    public var skippedImages: Int
    /// Data parallel: the number of ranks (images per second are theirs together), the seconds rank 0's gradient
    /// sums took and the seconds its steps waited for them after the backward pass (the rest was hidden behind it).
    public var ranks: Int?
    public var gradientSumSeconds: Double?
    public var gradientWaitSeconds: Double?
}

public enum TrainingError: Error, Equatable, CustomStringConvertible {
    case nonFiniteLoss(epoch: Int, step: Int)
    case diverged(epoch: Int, loss: Double, chance: Double, logits: Double)
    case runExists(String)
    case tooFewImages(count: Int, batch: Int)
    case noRunToResume(String)
    case configurationDiffers([String])
    case noAuxiliaryHead(model: String)
    case auxiliaryHeadInputSize(size: Int, sizes: ClosedRange<Int>?)

    public var description: String {
        switch self {
        case let .nonFiniteLoss(epoch, step):
            return "the loss is NaN or infinite at epoch \(epoch), step \(step); training stopped"
        case let .runExists(path): return "\(path) already holds a training run"
        case let .diverged(epoch, loss, chance, logits):
            return String(format: "training diverged: epoch %d's mean loss is %.3g, %.1f× chance level (%.3f), and "
                          + "its logits reached %.3g; stopped before writing its checkpoint", epoch, loss,
                          loss / chance, chance, logits)
        case let .tooFewImages(count,
                               batch): return "the training set has \(count) images, fewer than one batch of \(batch)"
        case let .noRunToResume(path): return "nothing to resume in \(path): no state.json from a completed epoch"
        case let .noAuxiliaryHead(model):
            return "\(model) has no auxiliary head (TF-slim released one for inception_v4 and inception_resnet_v2)"
        case let .auxiliaryHeadInputSize(size, sizes):
            return """
                the auxiliary head needs a 17×17 to 19×19 map after the B blocks (input \
                \(sizes.map { "\($0.lowerBound)–\($0.upperBound)" } ?? "none")), 
                """
                + "and input \(size) does not give one"
        case let .configurationDiffers(fields):
            return """
                cannot resume: \(fields.joined(separator: ", ")) \(fields.count == 1 ? "differs" : "differ") from the \
                run's 
                """
                + "config.json (only the number of epochs may change)"
        }
    }
}

/// Where a run is, after each step.
public struct TrainingProgress: Sendable {
    public let epoch: Int, epochs: Int
    /// Steps done in this epoch, and the epoch's steps.
    public let step: Int, steps: Int
    /// This epoch's mean loss and training accuracy so far, and its speed.
    public let loss: Double, accuracy: Double, imagesPerSecond: Double
    public let learningRate: Float
}

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
    public let graph: Graph
    public let training: TrainingGraph
    /// The auxiliary head's part of `training.graph`, when it is trained: its parameters are checkpointed apart
    /// (`auxiliary.safetensors`) and never averaged.
    let auxiliaryHead: Graph?
    let optimizer: Optimizer
    var average: WeightAverage?
    let trainSet: ImageFolder
    let validationSet: ImageFolder?
    let run: URL
    public private(set) var completedEpochs = 0
    public private(set) var history: [EpochMetrics] = []
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
            let stateURL = run.appendingPathComponent("state.json")
            guard let data = try? Data(contentsOf: stateURL),
                  let state = try? JSONDecoder().decode(RunState.self, from: data) else {
                throw TrainingError.noRunToResume(run.path)
            }
            let saved = try JSONDecoder().decode(TrainingConfiguration.self,
                                                 from: Data(contentsOf: run.appendingPathComponent("config.json")))
            let differing = try Self.differingFields(saved, configuration)
            guard differing.isEmpty else { throw TrainingError.configurationDiffers(differing) }
            values = try name.trainingValues(for: graph, weights: run.appendingPathComponent("model.safetensors"),
                                             seed: configuration.seed,
                                         repeats: configuration.repeats)
            if auxiliaryHead != nil {
                let file = run.appendingPathComponent("auxiliary.safetensors")
                values.merge(try name.auxiliaryValues(for: trainingGraph, weights: file)) { a, _ in a }
            }
            let file = try SafeTensorsFile(contentsOf: run.appendingPathComponent("optimizer.safetensors"))
            for key in file.entries.keys { optimizerState[key] = try file.floats(key) }
            steps = state.steps
            completedEpochs = state.epoch
            if configuration.averageDecay != nil {
                average = WeightAverage(decay: configuration.averageDecay!, values: try name.trainingValues(
                    for: graph, weights: run.appendingPathComponent("average.safetensors"), seed: configuration.seed,
                    repeats: configuration.repeats))
            }
            let lines = (try? String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)) ?? ""
            history = lines.split(separator: "\n").compactMap { try? JSONDecoder().decode(EpochMetrics.self,
                from: Data($0.utf8)) }
                .filter { $0.epoch <= state.epoch }
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

    struct RunState: Codable { var epoch: Int; var steps: Int }

    /// The files a run writes in its folder.
    static let runFiles = ["config.json", "state.json", "model.safetensors", "auxiliary.safetensors",
                           "average.safetensors", "optimizer.safetensors", "metrics.jsonl", "curves.svg"]

    /// Creates the run folder; refuses one that holds a run unless resuming it, or `overwrite` (which removes the
    /// run's files and leaves anything else in the folder).
    static func prepare(_ run: URL, resume: Bool, overwrite: Bool) throws {
        let fm = FileManager.default
        let existing = runFiles.filter { fm.fileExists(atPath: run.appendingPathComponent($0).path) }
        // A folder holds a run once an epoch has been saved; a run stopped before that has nothing to lose.
        let saved = existing.contains("state.json") || existing.contains("model.safetensors")
        if !resume && saved {
            guard overwrite else { throw TrainingError.runExists(run.path) }
            for file in existing { try fm.removeItem(at: run.appendingPathComponent(file)) }
        }
        try fm.createDirectory(at: run, withIntermediateDirectories: true)
    }

    /// The network with the auxiliary head, when the configuration asks for it (refused for networks without one, and
    /// for input sizes that do not give it its 1×1 output); nil when it does not.
    static func graphWithAuxiliaryHead(_ c: TrainingConfiguration, _ name: ModelName) throws -> Graph? {
        guard c.auxiliaryWeight != nil else { return nil }
        guard name.hasAuxiliaryHead else { throw TrainingError.noAuxiliaryHead(model: name.rawValue) }
        let graph = name.graph(classes: c.classes.count, repeats: c.repeats, auxiliaryHead: true)
        guard graph.inferShapes(n: 1, h: c.inputSize, w: c.inputSize) != nil else {
            let sizes = (1...1024).filter { graph.inferShapes(n: 1, h: $0, w: $0) != nil }
            throw TrainingError.auxiliaryHeadInputSize(size: c.inputSize, sizes: sizes.first.map { $0...sizes.last! })
        }
        return graph
    }

    /// The top-level fields of the two configurations' JSON that differ apart from the number of epochs, sorted.
    static func differingFields(_ a: TrainingConfiguration, _ b: TrainingConfiguration) throws -> [String] {
        func fields(_ c: TrainingConfiguration) throws -> [String: Data] {
            let object = try JSONSerialization.jsonObject(with: JSONEncoder.sorted.encode(c)) as! [String: Any]
            return try object.mapValues { try JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys,
                .fragmentsAllowed]) }
        }
        // The schedule's length follows the number of epochs (a cosine schedule stretches to the new end).
        var (a, b) = (a, b)
        (a.epochs, a.schedule.epochs) = (b.epochs, b.schedule.epochs)
        let (x, y) = (try fields(a), try fields(b))
        return Set(x.keys).union(y.keys).filter { x[$0] != y[$0] }.sorted()
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
        let (c, samples, preprocessing) = (configuration, trainSet.samples, name.preprocessing)
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
            let input = name.preprocessing.batch(images, inputSize: configuration.inputSize)
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

    /// Weights, average and optimiser state, the metrics lines and their picture, then `state.json` naming this
    /// epoch.
    func checkpoint(epoch: Int) throws {
        // The class names and input size travel with the weights, so the checkpoint classifies as it was trained.
        var metadata = CheckpointMetadata(model: name, classNames: configuration.classes,
                                          inputSize: configuration.inputSize, repeats: configuration.repeats).strings
        metadata["epoch"] = "\(epoch)"
        try SafeTensorsFile.write(name.checkpointTensors(graph, training.values), metadata: metadata,
                                  to: run.appendingPathComponent("model.safetensors"))
        if let auxiliaryHead {
            try SafeTensorsFile.write(auxiliaryHead.parameters.map { ($0.name, $0.shape, training.values[$0.name]!) },
                                      metadata: metadata, to: run.appendingPathComponent("auxiliary.safetensors"))
        }
        if let average {
            try SafeTensorsFile.write(name.checkpointTensors(graph, average.values), metadata: metadata,
                                      to: run.appendingPathComponent("average.safetensors"))
        }
        let state = optimizer.state.keys.sorted().map { ($0, [optimizer.state[$0]!.count], optimizer.state[$0]!) }
        try SafeTensorsFile.write(state, metadata: ["steps": "\(optimizer.steps)"],
                                  to: run.appendingPathComponent("optimizer.safetensors"))
        try saveMetrics()
        try Self.writeAtomically(try JSONEncoder.sorted.encode(RunState(epoch: epoch, steps: optimizer.steps)),
                                 to: run.appendingPathComponent("state.json"))
    }

    /// The last completed epoch's validation, when it has not run yet (a run stopped during it is resumed so, with
    /// the weights it was to validate), and its metrics saved with it.
    func validateUnfinishedEpoch(unreadableImage: (String, String) -> Void) throws {
        guard let validationSet, let last = history.last, last.epoch == completedEpochs,
              last.validationAccuracy == nil else { return }
        history[history.count - 1].validationAccuracy = try validate(validationSet, unreadableImage: unreadableImage)
        if communicator?.isRoot ?? true { try saveMetrics() }
    }

    /// Every epoch's metrics line, and the picture of them.
    func saveMetrics() throws {
        let lines = try history.map { try $0.jsonLine() }.joined(separator: "\n") + "\n"
        try Self.writeAtomically(Data(lines.utf8), to: run.appendingPathComponent("metrics.jsonl"))
        try Self.writeAtomically(Data(curvesSVG(history).utf8), to: run.appendingPathComponent("curves.svg"))
    }

    static func writeAtomically(_ data: Data, to url: URL) throws { try FileOutput.write(data, to: url) }
}

extension JSONEncoder {
    static var sorted: JSONEncoder { let e = JSONEncoder(); e.outputFormatting = [.sortedKeys]; return e }
    static var pretty: JSONEncoder { let e = JSONEncoder(); e.outputFormatting = [.sortedKeys,
        .prettyPrinted]; return e }
}
