import Foundation

/// The arithmetic a model's convolutions run in. Every other operation (pools, concatenation, residual additions,
/// BatchNorm outside a convolution, linear layers) stays in fp32, and so do the convolutions' epilogues.
public enum Precision: String, Sendable, Hashable, CaseIterable {
    case fp32
    /// Weights packed once as bfloat16, each convolution's input rounded to bfloat16 (to nearest even), products
    /// summed in fp32.
    case bf16
    /// Post-training static quantisation: per-output-channel symmetric s8 weights, u8 activations with a scale and
    /// zero point per layer input from calibration, int32 sums; the model's first convolution stays fp32.
    case int8
}

/// Why a model cannot be compiled at a precision, in one line.
public enum PrecisionError: Error, Equatable, CustomStringConvertible {
    case unsupported(String)
    case needsQuantizedWeights

    public var description: String {
        switch self {
        case let .unsupported(reason): return reason
        case .needsQuantizedWeights:
            return "int8 needs a quantised checkpoint (int8 weights with calibrated input scales); "
                + "these weights are fp32"
        }
    }
}

/// A precision checked once against this CPU, with the tiles that run it: the one place a precision is refused
/// (`PrecisionError.unsupported`, one line naming what the CPU lacks), and what the compiler takes. (int8 also needs
/// a quantised checkpoint; that is the weights' fault, `PrecisionError.needsQuantizedWeights`, found with them.)
public struct PrecisionRoute: Sendable {
    public let precision: Precision
    package let kernels: ReducedKernels

    /// `precision` on this CPU's tiles; throws if the CPU cannot run it.
    public init(_ precision: Precision) throws(PrecisionError) { try self.init(precision, kernels: .current) }

    package init(_ precision: Precision, kernels: ReducedKernels) throws(PrecisionError) {
        if precision == .bf16, let problem = kernels.bf16Problem { throw .unsupported(problem) }
        (self.precision, self.kernels) = (precision, kernels)
    }

    /// fp32, which every CPU runs.
    public static let fp32 = try! PrecisionRoute(.fp32)

    /// What runs the convolutions' multiplies: the reduced-precision route (`amx-bf16`, `avx512-vnni`, …), or the
    /// kernel level for fp32.
    public var name: String {
        switch precision {
        case .fp32: return kernels.level.rawValue
        case .bf16: return kernels.bf16Name!
        case .int8: return kernels.int8Name
        }
    }
}
