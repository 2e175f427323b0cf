/// The operations whose forward pass is the same in inference and in training, and the one place both executors
/// run them. Convolutions, linear layers, BatchNorm and dropout differ between the two (folded and packed once
/// against normalised with batch statistics, identity against masked) and stay with each executor.
enum SharedOperation: Sendable {
    case maxPool(kernel: Int, stride: Int, ceilMode: Bool)
    case averagePool(kernel: Int, stride: Int, padding: Int)
    case concat
    case residual(scale: Float, activation: Activation)
    case globalAveragePool
    case l2Normalize
    case softmax

    init?(_ operation: Operation) {
        switch operation {
        case let .maxPool(k, s, ceilMode): self = .maxPool(kernel: k, stride: s, ceilMode: ceilMode)
        case let .averagePool(k, s, p): self = .averagePool(kernel: k, stride: s, padding: p)
        case .concat: self = .concat
        case let .residual(scale, activation): self = .residual(scale: scale, activation: activation)
        case .globalAveragePool: self = .globalAveragePool
        case .l2Normalize: self = .l2Normalize
        case .softmax: self = .softmax
        case .input, .convolution, .linear, .dropout, .batchNorm, .prelu: return nil
        }
    }

    /// Runs the operation on `inputs` (the node's, in order) into `output`. `inPlace(k)`: input k of a
    /// concatenation was written straight into its channel slice (inference's memory plan), so is not copied.
    func run(_ inputs: [FeatureMap], output: FeatureMap, threads: Int, inPlace: (Int) -> Bool = { _ in false }) {
        switch self {
        case let .maxPool(k, s, ceilMode):
            Pooling.maxPool(input: inputs[0], output: output, kernel: k, stride: s, ceilMode: ceilMode,
                            threads: threads)
        case let .averagePool(k, s, p):
            Pooling.averagePool(input: inputs[0], output: output, kernel: k, stride: s, padding: p, threads: threads)
        case .concat:
            var offset = 0
            for (k, input) in inputs.enumerated() {
                if !inPlace(k) {
                    Pooling.copy(input: input, output: output.channels(offset, input.c), threads: threads)
                }
                offset += input.c
            }
        case let .residual(scale, activation):
            Elementwise.residual(shortcut: inputs[0], branch: inputs[1], output: output, scale: scale,
                                 activation: activation, threads: threads)
        case .globalAveragePool:
            Pooling.globalAveragePool(input: inputs[0], output: output, threads: threads)
        case .l2Normalize:
            Elementwise.l2Normalize(input: inputs[0], output: output, threads: threads)
        case .softmax:
            Elementwise.softmax(input: inputs[0], output: output, threads: threads)
        }
    }
}
