import Foundation
import Inception
import InceptionEngine

/// The update rules, with the semantics of the implementations people compare against:
///   sgd      PyTorch `SGD(momentum, nesterov, weight_decay)`: buffer = m · buffer + g (g itself on the first step),
///            update = g + m · buffer with Nesterov, else buffer.
///   rmsprop  TensorFlow's (= timm `RMSpropTF`, the paper's: decay 0.9, momentum 0.9, ε = 1.0): mean square starts
///            at 1, ms += (1 − decay)(g² − ms); buffer = m · buffer + lr · g / √(ms + ε); p −= buffer.
/// Weight decay is added to the gradient (L2, as both do), by default only for weights of rank ≥ 2 — timm's
/// default, which leaves biases and BatchNorm parameters undecayed.
public struct OptimizerSettings: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable, CaseIterable { case sgd, rmsprop }
    public var kind: Kind
    public var momentum: Float
    public var nesterov: Bool = false
    public var weightDecay: Float
    public var decayBiasAndNorm: Bool = false
    /// RMSProp's decay of the mean square.
    public var decay: Float = 0.9
    /// RMSProp's ε, inside the square root.
    public var epsilon: Float = 1.0

    public init(kind: Kind, momentum: Float = 0.9, nesterov: Bool = false, weightDecay: Float = 0,
                decayBiasAndNorm: Bool = false, decay: Float = 0.9, epsilon: Float = 1.0) {
        (self.kind, self.momentum, self.nesterov, self.weightDecay) = (kind, momentum, nesterov, weightDecay)
        (self.decayBiasAndNorm, self.decay, self.epsilon) = (decayBiasAndNorm, decay, epsilon)
    }

    /// The paper's optimiser (§4): RMSProp, decay 0.9, momentum 0.9, ε = 1.0; TF-slim's weight decay 4e-5.
    public static let paper = OptimizerSettings(kind: .rmsprop, momentum: 0.9, weightDecay: 4e-5)
}

public final class Optimizer {
    public let settings: OptimizerSettings
    /// Per parameter: `momentum` buffers, and RMSProp's `square_avg`; keyed `"<parameter>.momentum_buffer"` and
    /// `"<parameter>.square_avg"` when saved.
    public private(set) var state: [String: [Float]] = [:]
    public private(set) var steps = 0
    /// Threads for the element-wise updates (results are the same for any number).
    public var threads = Parallel.defaultThreads

    /// The parameters weight decay applies to (all with `decayBiasAndNorm`, else those whose role decays).
    let decayed: Set<String>

    /// For `parameters` (a graph's): their roles decide which are decayed. `state` and `steps`: what `state` held
    /// after `steps` steps, to resume.
    package init(_ settings: OptimizerSettings, parameters: [ParameterSpec], state: [String: [Float]] = [:],
                steps: Int = 0) {
        self.settings = settings
        decayed = Set(parameters.filter { settings.decayBiasAndNorm || $0.role.decaysByDefault }.map(\.name))
        self.state = state
        self.steps = steps
    }

    /// Updates every parameter that has a gradient.
    public func step(_ values: inout [String: [Float]], gradients: [String: [Float]], learningRate lr: Float) {
        let s = settings
        for name in gradients.keys.sorted() {
            let g = gradients[name]!
            let wd = decayed.contains(name) ? s.weightDecay : 0
            // Taken out of the dictionary while updated, so the update does not copy the buffer.
            let stored = state.removeValue(forKey: "\(name).momentum_buffer")
            let first = stored == nil
            var buffer = stored ?? [Float](repeating: 0, count: g.count)
            var square = s.kind == .rmsprop
                ? state.removeValue(forKey: "\(name).square_avg") ?? [Float](repeating: 1, count: g.count) : []
            values[name]!.withUnsafeMutableBufferPointer { p in
                g.withUnsafeBufferPointer { g in buffer.withUnsafeMutableBufferPointer { m in
                    square.withUnsafeMutableBufferPointer { v in
                    let count = g.count
                    let (p, g, m, v) = (UncheckedSendable(p.baseAddress!), UncheckedSendable(g.baseAddress!),
                                        UncheckedSendable(m.baseAddress!), UncheckedSendable(v.baseAddress))
                    // Element-wise, so any split gives the same result; large tensors are split over the threads.
                    let block = 1 << 15
                    Parallel.parallelFor((count + block - 1) / block, threads: threads) { chunk in
                        let (p, g, m) = (p.value, g.value, m.value)
                        let range = (chunk * block)..<min(count, (chunk + 1) * block)
                        switch s.kind {
                        case .sgd:
                            for i in range {
                                let d = g[i] + wd * p[i]
                                m[i] = s.momentum == 0 ? d : (first ? d : s.momentum * m[i] + d)
                                p[i] -= lr * (s.nesterov ? d + s.momentum * m[i] : m[i])
                            }
                        case .rmsprop:
                            let v = v.value!
                            for i in range {
                                let d = g[i] + wd * p[i]
                                v[i] += (1 - s.decay) * (d * d - v[i])
                                let scaled = lr * (d / (v[i] + s.epsilon).squareRoot())
                                if s.momentum > 0 {
                                    m[i] = s.momentum * m[i] + scaled
                                    p[i] -= m[i]
                                } else {
                                    p[i] -= scaled
                                }
                            }
                        }
                    }
                } } }
            }
            if s.kind == .rmsprop { state["\(name).square_avg"] = square }
            state["\(name).momentum_buffer"] = buffer
        }
        steps += 1
    }
}

/// Scales every gradient by min(1, maxNorm / ‖all gradients‖₂), as `torch.nn.utils.clip_grad_norm_`; returns the
/// norm before clipping.
@discardableResult
public func clipGradients(_ gradients: inout [String: [Float]], maxNorm: Float) -> Double {
    var sum = 0.0
    for g in gradients.values { for v in g { sum += Double(v) * Double(v) } }
    let norm = sum.squareRoot()
    let scale = Float(Double(maxNorm) / (norm + 1e-6))
    if scale < 1 {
        for name in gradients.keys { gradients[name] = gradients[name]!.map { $0 * scale } }
    }
    return norm
}

/// An exponential moving average of the weights (the paper evaluates "a running average of the parameters"):
/// average = decay · average + (1 − decay) · value after every step, BatchNorm buffers included (as timm's
/// `ModelEmaV2`).
public struct WeightAverage: Sendable {
    public var decay: Float
    public private(set) var values: [String: [Float]]

    public init(decay: Float, values: [String: [Float]]) { (self.decay, self.values) = (decay, values) }

    /// Moves the average of each averaged parameter towards its value in `current` (which may hold more).
    public mutating func update(_ current: [String: [Float]]) {
        for name in values.keys {
            let v = current[name]!
            values[name]!.withUnsafeMutableBufferPointer { a in
                for i in 0..<v.count { a[i] = decay * a[i] + (1 - decay) * v[i] }
            }
        }
    }
}

/// Learning rate by epoch (fractional: step / steps per epoch).
public struct LearningRateSchedule: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        /// The paper's: × `factor` every `every` epochs, staircase (0.94 every 2).
        case exponential
        case cosine
        case constant
    }
    public var kind: Kind
    public var base: Float
    public var factor: Float = 0.94
    public var every: Float = 2
    /// Linear warm-up from 0 over this many epochs.
    public var warmupEpochs: Float = 0
    /// The total, for cosine.
    public var epochs: Float = 1
    public var minimum: Float = 0

    public init(kind: Kind, base: Float, factor: Float = 0.94, every: Float = 2, warmupEpochs: Float = 0,
                epochs: Float = 1, minimum: Float = 0) {
        (self.kind, self.base, self.factor, self.every) = (kind, base, factor, every)
        (self.warmupEpochs, self.epochs, self.minimum) = (warmupEpochs, epochs, minimum)
    }

    /// The paper's: 0.045, × 0.94 every two epochs.
    public static let paper = LearningRateSchedule(kind: .exponential, base: 0.045)

    public func rate(epoch: Float) -> Float {
        if epoch < warmupEpochs { return base * epoch / warmupEpochs }
        switch kind {
        case .constant: return base
        case .exponential: return base * pow(factor, (epoch / every).rounded(.down))
        case .cosine:
            let t = min(1, (epoch - warmupEpochs) / max(epochs - warmupEpochs, 1e-9))
            return minimum + (base - minimum) * 0.5 * (1 + cos(Float.pi * t))
        }
    }
}
