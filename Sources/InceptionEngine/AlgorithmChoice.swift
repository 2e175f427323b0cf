import InceptionKernels

/// Which convolution algorithm each layer may use.
public enum ConvolutionAlgorithms: Sendable, Hashable {
    /// Winograd where `inception bench kernels` measured it faster on this project's machine (2-core Zen 3; the
    /// table is in docs/performance.md), judged at the output size the layer has for the model's usual input:
    /// - 3×3: at least 32 input and output channels, output side ≤ 80 (F(6×6, 3×3), or F(4×4, 3×3) on small maps:
    ///   `WinogradTransform.forTaps`); at 147–149 pixels and 32 channels the two algorithms tie;
    /// - 1×7 and 7×1: ≥ 64 channels in and out, ≥ 160 together, side ≤ 40 (F(4, 7));
    /// - 1×3 and 3×1: ≥ 192 channels in and out, side ≥ 8 (F(4, 3)).
    /// The implicit GEMM elsewhere: on wide few-channel maps the transforms cost more than they save.
    case automatic
    /// Winograd wherever the layer allows it (stride 1; kernel sides of 1, 3 or 7), for tests and comparisons.
    case winogradWherePossible
    /// The implicit GEMM everywhere.
    case direct
    /// Per layer as measured on this CPU class and instruction-set level (`inception bench kernels --save`),
    /// Winograd's tile included; layers the table does not list follow `.automatic`. A table, not a timing at every
    /// start: the algorithms round differently, and results must not change from one run to the next.
    case measured(AlgorithmTable)

    /// How a layer of geometry `g`, with output side `side` at the usual input size, runs.
    package func choice(_ g: ConvGeometry, side: Int) -> ConvolutionChoice {
        switch self {
        case .direct: return .direct
        case .winogradWherePossible: return .winograd(tile: nil)
        case let .measured(table):
            return table.choices[AlgorithmTable.key(g, side: side)] ?? Self.automatic.choice(g, side: side)
        case .automatic:
            let (low, total) = (min(g.inChannels, g.outChannels), g.inChannels + g.outChannels)
            let winograd: Bool
            switch (g.kernelH, g.kernelW) {
            case (3, 3): winograd = low >= 32 && side <= 80
            case (1, 7), (7, 1): winograd = low >= 64 && total >= 160 && side <= 40
            case (1, 3), (3, 1): winograd = low >= 192 && side >= 8
            default: winograd = false
            }
            return winograd ? .winograd(tile: nil) : .direct
        }
    }
}

/// How one convolution layer runs: the implicit GEMM, or Winograd with output tiles of `tile` pixels along each
/// 3-tap axis (4: F(4, 3), 6: F(6, 3); nil: `WinogradTransform.forTaps`'s choice from the layer's size). 7-tap axes
/// always take F(4, 7). Kept in a table as "direct", "winograd" or "winograd F(m,3)".
package enum ConvolutionChoice: Sendable, Hashable, CodableAsText {
    case direct
    case winograd(tile: Int?)

    package var description: String {
        switch self {
        case .direct: return "direct"
        case .winograd(nil): return "winograd"
        case let .winograd(m?): return "winograd F(\(m),3)"
        }
    }

    package init?(_ text: String) {
        switch text {
        case "direct": self = .direct
        case "winograd": self = .winograd(tile: nil)
        case "winograd F(2,3)": self = .winograd(tile: 2)
        case "winograd F(4,3)": self = .winograd(tile: 4)
        case "winograd F(6,3)": self = .winograd(tile: 6)
        default: return nil
        }
    }

    package static var textKind: String { "a convolution choice" }
}

/// How each convolution layer runs, measured on one CPU class at one instruction-set level.
public struct AlgorithmTable: Sendable, Hashable, Codable {
    /// The CPU's model name and the kernels' level the times were measured with.
    package var cpu: String, isa: String
    /// Per layer (`key(_:side:)`): the fastest of the implicit GEMM and Winograd at each tile the layer allows.
    package var choices: [String: ConvolutionChoice]

    /// Per layer (`TileTuning.key`): the fastest register tile, measured by the build `build` (a new binary measures
    /// again: its kernels may differ). Absent from tables written before tiles were measured.
    package var tiles: [String: TileShape]?
    package var build: String?

    package init(cpu: String, isa: String, choices: [String: ConvolutionChoice] = [:]) {
        (self.cpu, self.isa, self.choices) = (cpu, isa, choices)
    }

    /// A layer: its geometry and its usual output side.
    package static func key(_ g: ConvGeometry, side: Int) -> String {
        "\(g.inChannels)->\(g.outChannels) k\(g.kernelH)x\(g.kernelW) s\(g.strideH) p\(g.padH),\(g.padW) side \(side)"
    }
}

/// A convolution ready to run, by either algorithm.
package enum CompiledConvolution: Sendable {
    case direct(PackedConvolution)
    /// With the batched multiplies' register tile (nil: the level's built-in one).
    case winograd(WinogradConvolution, tile: TileShape?)
    /// bf16 or int8 (`Precision`), always as the implicit GEMM.
    case reduced(ReducedConvolution)

    func scratchFloats(n: Int, h: Int, w: Int) -> Int {
        switch self {
        case .direct: return 0
        case let .winograd(conv, _): return conv.scratchFloats(n: n, h: h, w: w)
        case let .reduced(conv): return conv.scratchFloats(n: n, h: h, w: w)
        }
    }

    /// The output channels over `outputs` (several only for merged siblings, which are never Winograd's).
    func run(input: FeatureMap, outputs: [FeatureMap], residual: FeatureMap?, scratch: UnsafeMutablePointer<Float>,
             zeros: UnsafePointer<Float>, threads: Int) {
        switch self {
        case let .direct(conv):
            conv.run(input: input, outputs: outputs, residual: residual, zeros: zeros, threads: threads)
        case let .winograd(conv, tile):
            precondition(outputs.count == 1, "Winograd writes one map")
            conv.run(input: input, output: outputs[0], residual: residual, scratch: scratch, threads: threads,
                     tile: tile)
        case let .reduced(conv):
            conv.run(input: input, outputs: outputs, residual: residual, scratch: scratch, threads: threads)
        }
    }
}
