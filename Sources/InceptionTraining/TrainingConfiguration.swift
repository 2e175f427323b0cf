import Foundation
import Inception

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

extension JSONEncoder {
    static var sorted: JSONEncoder { let e = JSONEncoder(); e.outputFormatting = [.sortedKeys]; return e }
    static var pretty: JSONEncoder { let e = JSONEncoder(); e.outputFormatting = [.sortedKeys,
        .prettyPrinted]; return e }
}
