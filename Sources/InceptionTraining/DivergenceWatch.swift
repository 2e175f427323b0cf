import Foundation
import InceptionEngine

/// Watches the loss for divergence. Chance level is ln(classes), the loss of a uniform guess. A batch whose loss is
/// over 3 × chance (and at least chance + 8, since few classes have a small chance level), or whose logits pass
/// ±1000 (softmax saturated), is reported once per epoch as a warning: a short run on few images can recover from
/// that. An epoch that ends with its mean loss over 10 × chance (and at least chance + 30), or whose logits passed
/// ±10⁶, has diverged: training stops before that epoch's checkpoint is written, so the last good one stays.
struct DivergenceWatch {
    static let warningLogits: Float = 1e3, stoppingLogits: Float = 1e6
    let chance: Double, warningLoss: Double, stoppingLoss: Double
    private var warnedEpoch = 0
    private var largestLogit: Float = 0

    init(classes: Int) {
        chance = Foundation.log(Double(max(2, classes)))
        warningLoss = max(3 * chance, chance + 8)
        stoppingLoss = max(10 * chance, chance + 30)
    }

    /// A warning for this batch, the first time in an epoch that one is due.
    mutating func batch(loss: Double, logits: Tensor, epoch: Int, step: Int) -> String? {
        let largest = logits.scalars.reduce(0) { max($0, abs($1)) }
        largestLogit = max(largestLogit, largest.isNaN ? .infinity : largest)
        guard warnedEpoch < epoch, loss > warningLoss || largest > Self.warningLogits else { return nil }
        warnedEpoch = epoch
        return String(format: "epoch %d, step %d: the loss is %.3g, %.1f× chance level (ln %d classes = %.3f), and "
                      + "logits reach %.3g; the learning rate may be too high", epoch, step, loss, loss / chance,
                      Int(Foundation.exp(chance).rounded()), chance, Double(largest))
    }

    /// At the end of an epoch: throws `TrainingError.diverged` when it diverged, and starts watching the next.
    mutating func check(epoch: Int, meanLoss: Double) throws {
        defer { largestLogit = 0 }
        if meanLoss > stoppingLoss || largestLogit > Self.stoppingLogits {
            throw TrainingError.diverged(epoch: epoch, loss: meanLoss, chance: chance, logits: Double(largestLogit))
        }
    }
}
