import Dispatch
import Foundation
import InceptionKernels

/// Which register tile (`TileShape`) each convolution runs with, chosen by measuring the candidates of the kernel
/// level on the CPU that runs the model: the right tile depends on the core (its registers, its FMA units and their
/// latency — two 512-bit units of 4 cycles want 12 accumulators, a core that splits each zmm operation in two wants
/// 6), so no constant tuned on one machine is right on another. Each layer is measured once, at its usual input size,
/// and the answer kept (InceptionModel keeps it beside `bench kernels --save`'s algorithm choices); since every tile
/// adds each output's products in the same order, the choice changes speed only, never a bit of a result.
public struct TileTuning: Sendable {
    /// Tiles already measured on this CPU, by layer (`key(_:side:choice:)`).
    package var known: [String: TileShape]
    /// Whether layers `known` lacks are measured now; otherwise they take the level's built-in tile.
    package var measure: Bool
    /// Seconds measuring may take for one model (the largest layers first); the rest are measured at the next load.
    package var budget: Double
    /// Called once before measuring, with the number of layers to measure (the command line's one line).
    package var announce: @Sendable (_ layers: Int) -> Void
    /// Called after measuring with every new entry, to keep them.
    package var record: @Sendable (_ measured: [String: TileShape]) -> Void

    package init(known: [String: TileShape] = [:], measure: Bool, budget: Double = 2,
                announce: @escaping @Sendable (Int) -> Void = { _ in },
                record: @escaping @Sendable ([String: TileShape]) -> Void = { _ in }) {
        (self.known, self.measure, self.budget, self.announce, self.record) = (known, measure, budget, announce, record)
    }

    /// The built-in tile everywhere, nothing measured.
    package static let builtIn = TileTuning(measure: false)

    /// False where `INCEPTION_TUNE=0`: every layer takes its level's built-in tile and nothing is measured.
    package static let enabled = ProcessInfo.processInfo.environment["INCEPTION_TUNE"] != "0"

    /// A layer's entry: its geometry and usual output side (as `AlgorithmTable.key`) and its algorithm.
    package static func key(_ g: ConvGeometry, side: Int, choice: ConvolutionChoice) -> String {
        AlgorithmTable.key(g, side: side) + " " + choice.description
    }

    private static let gemmTiles = Locked<[String: TileShape]>([:])

    /// GEMM's tile at a level (the training step's weight and input gradients): the fastest candidate on a product of
    /// the training step's kind (a 288 × 1152 by 1152 × 192 product, about 20 ms of measuring at most), measured once
    /// per process; the built-in tile when tuning is off.
    package static func gemmTile(_ kernels: KernelTable) -> TileShape {
        guard enabled && kernels.tiles.count > 1 else { return kernels.builtInTile }
        if let known = gemmTiles.withLock({ $0[kernels.name] }) { return known }
        let (m, k, n) = (288, 1152, 192)
        let a = [Float](repeating: 0.5, count: m * k), b = [Float](repeating: 0.25, count: k * n)
        var c = [Float](repeating: 0, count: m * n)
        let fastest = a.withUnsafeBufferPointer { a in b.withUnsafeBufferPointer { b in
            c.withUnsafeMutableBufferPointer { c in
                let (av, bv) = (MatrixView(rowMajor: a.baseAddress!, rows: m, columns: k),
                                MatrixView(rowMajor: b.baseAddress!, rows: k, columns: n))
                return fastestTile(kernels.tiles, runs: 3) { tile in
                    GEMM.multiply(av, bv, into: c.baseAddress!, ldc: n, accumulate: false,
                                  threads: Parallel.defaultThreads, kernels: kernels, tile: tile)
                }
            }
        } }
        gemmTiles.withLock { $0[kernels.name] = fastest }
        return fastest
    }

    /// The candidate whose `run` took least time (best of `runs`, after one untimed run each), candidates alternating
    /// so that a change of clock speed cannot favour one. The first (the built-in tile) stays unless another is at
    /// least 3% faster: on a shared machine, smaller differences are noise.
    static func fastestTile(_ candidates: [TileShape], runs: Int, _ run: (TileShape) -> Void) -> TileShape {
        var best = [Double](repeating: .infinity, count: candidates.count)
        for round in 0...runs {
            for (i, tile) in candidates.enumerated() {
                let start = DispatchTime.now().uptimeNanoseconds
                run(tile)
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                if round > 0 { best[i] = min(best[i], seconds) }
            }
        }
        let fastest = best.indices.min { best[$0] < best[$1] }!
        return best[fastest] < 0.97 * best[0] ? candidates[fastest] : candidates[0]
    }
}

/// One convolution layer's tile, as `CompiledGraph.tiles` reports it.
package struct LayerTile: Sendable, Hashable {
    package let key: String
    package let tile: TileShape
    /// Whether it came from a measurement on this CPU (now or kept from before), not the built-in rule.
    package let measured: Bool
}

extension CompiledConvolution {
    /// The same convolution running with `tile` (reduced precision has tiles of its own and is returned unchanged).
    func with(tile: TileShape?) -> CompiledConvolution {
        switch self {
        case var .direct(conv): conv.tile = tile; return .direct(conv)
        case let .winograd(conv, _): return .winograd(conv, tile: tile)
        case .reduced: return self
        }
    }

    /// The algorithm, as a tile key names it; nil for reduced precision (no register tile to choose).
    var choice: ConvolutionChoice? {
        switch self {
        case .direct: return .direct
        case let .winograd(w, _): return .winograd(tile: w.vertical.r == 3 ? w.vertical.m
                                                    : w.horizontal.r == 3 ? w.horizontal.m : nil)
        case .reduced: return nil
        }
    }

    var geometry: ConvGeometry? {
        switch self {
        case let .direct(conv): return conv.geometry
        case let .winograd(conv, _): return conv.geometry
        case .reduced: return nil
        }
    }
}

extension CompiledGraph {
    /// A convolution of the compiled graph whose tile can be chosen: its node, key and usual input and output.
    struct TunableLayer {
        let node: Int, key: String, input: Shape, output: Shape, macs: Int
    }

    /// Each fp32 convolution's tile: `tuning.known`'s, else measured (within the budget), else the built-in one.
    static func chooseTiles(_ steps: inout [Step], usualShapes: [Shape],
                            tuning: TileTuning, zeros: UnsafePointer<Float>) -> [LayerTile] {
        var layers: [TunableLayer] = []
        for (i, step) in steps.enumerated() {
            guard let (conv, input) = step.convolution, let g = conv.geometry, let choice = conv.choice,
                  usualShapes.indices.contains(i) else { continue }
            // Merged siblings write all their channels at the first sibling's node.
            var out = usualShapes[i]
            out.c = g.outChannels
            guard usualShapes[input].c == g.inChannels else { continue }
            let key = TileTuning.key(g, side: max(out.h, out.w), choice: choice)
            layers.append(TunableLayer(node: i, key: key, input: usualShapes[input], output: out,
                                       macs: out.count * g.depth))
        }
        var chosen = tuning.known
        let missing = Dictionary(layers.filter { chosen[$0.key] == nil }.map { ($0.key, $0) }) { a, _ in a }
        let candidates = Kernels.current.tiles
        if tuning.measure && !missing.isEmpty && candidates.count > 1 {
            tuning.announce(missing.count)
            let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(tuning.budget * 1e9)
            var measured: [String: TileShape] = [:]
            for layer in missing.values.sorted(by: { $0.macs > $1.macs }) {
                guard DispatchTime.now().uptimeNanoseconds < deadline else { break }
                guard let (conv, _) = steps[layer.node].convolution else { continue }
                measured[layer.key] = fastestTile(conv, layer, candidates, zeros: zeros)
            }
            chosen.merge(measured) { $1 }
            tuning.record(measured)
        }
        return layers.map { layer in
            let tile = chosen[layer.key].flatMap { candidates.contains($0) ? $0 : nil }
            if let tile { steps[layer.node] = steps[layer.node].with(tile: tile) }
            return LayerTile(key: layer.key, tile: tile ?? Kernels.current.builtInTile, measured: tile != nil)
        }
    }

    /// The fastest candidate for one layer, run alone on random values at its usual shape.
    static func fastestTile(_ conv: CompiledConvolution, _ layer: TunableLayer, _ candidates: [TileShape],
                            zeros: UnsafePointer<Float>) -> TileShape {
        let (x, y) = (layer.input, layer.output)
        let input = AlignedBuffer(count: x.count), output = AlignedBuffer(count: y.count)
        let scratch = AlignedBuffer(count: conv.scratchFloats(n: x.n, h: x.h, w: x.w))
        var rng = SplitMix64(UInt64(layer.macs))
        for i in 0..<x.count { input.pointer[i] = rng.uniform() }
        let inMap = FeatureMap(base: input.pointer, n: x.n, h: x.h, w: x.w, c: x.c)
        let outMap = FeatureMap(base: output.pointer, n: y.n, h: y.h, w: y.w, c: y.c)
        return TileTuning.fastestTile(candidates, runs: 3) { tile in
            conv.with(tile: tile).run(input: inMap, outputs: [outMap], residual: nil, scratch: scratch.pointer,
                                      zeros: zeros, threads: Parallel.defaultThreads)
        }
    }
}

extension CompiledGraph.Step {
    /// The convolution this step runs and its input node, if it runs one.
    var convolution: (CompiledConvolution, input: Int)? {
        switch self {
        case let .convolution(conv, input, _), let .siblings(conv, input, _): return (conv, input)
        default: return nil
        }
    }

    /// The same step with its convolution running at `tile`.
    func with(tile: TileShape) -> CompiledGraph.Step {
        switch self {
        case let .convolution(conv, input, residual): return .convolution(conv.with(tile: tile), input: input,
                                                                          residual: residual)
        case let .siblings(conv, input, outputs): return .siblings(conv.with(tile: tile), input: input,
                                                                   outputs: outputs)
        default: return self
        }
    }
}
