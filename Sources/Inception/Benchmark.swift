import Foundation
import InceptionEngine
import InceptionIO

/// The measurements behind `inception bench`, as a library user can run them: forward passes, per-layer profiles
/// and single-layer algorithm timings. Each returns times; what to print is the caller's.
package enum Benchmark {
    /// The median of `xs` (the mean of the middle two for an even count).
    package static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// A random input in [-1, 1], NHWC.
    package static func randomInput(batch: Int, size: Int) -> Tensor {
        var rng = SystemRandomNumberGenerator()
        return Tensor(shape: [batch, size, size, 3],
                      scalars: (0..<(batch * size * size * 3)).map { _ in Float.random(in: -1...1, using: &rng) })
    }

    /// Seconds `body` took.
    package static func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    /// `warmup` untimed then `runs` timed forward passes of `input`: each timed run's seconds, in order.
    package static func forward(_ net: InceptionModel, _ input: Tensor, warmup: Int, runs: Int,
                               threads: Int) throws -> [Double] {
        for _ in 0..<warmup { _ = try net.compiled.run(input, threads: threads) }
        return try (0..<runs).map { _ in try seconds { _ = try net.compiled.run(input, threads: threads) } }
    }

    /// `forward`, but each run explains the batch (`InceptionModel.explain` by `method` at the last block, each image
    /// for its top class): one forward pass and the backward pass to the explained layer, and the maps.
    package static func explain(_ net: InceptionModel, _ input: Tensor, method: CAMMethod, warmup: Int, runs: Int,
                               threads: Int) throws -> [Double] {
        let per = input.count / input.shape[0]
        let images = (0..<input.shape[0]).map { Array(input.scalars[($0 * per)..<(($0 + 1) * per)]) }
        for _ in 0..<warmup { _ = try net.explain(prepared: images, method: method, threads: threads) }
        return try (0..<runs).map { _ in
            try seconds { _ = try net.explain(prepared: images, method: method, threads: threads) }
        }
    }

    /// `runs` forward passes with a per-node timer: each node's median seconds (0 for nodes that run inside
    /// another, such as a merged or fused one).
    package static func profile(_ net: InceptionModel, _ input: Tensor, runs: Int, threads: Int) throws -> [Double] {
        var samples = [[Double]](repeating: [], count: net.graph.nodes.count)
        for _ in 0..<runs { _ = try net.compiled.run(input, threads: threads) { samples[$0].append($1) } }
        return samples.map { $0.isEmpty ? 0 : median($0) }
    }

    /// One convolution alone, median of `runs` runs, by the implicit GEMM and by each Winograd tile it allows
    /// (F(4, 3) and F(6, 3) where an axis has 3 taps; the one transform otherwise), in seconds.
    package static func convolutionChoices(_ g: ConvGeometry, input x: Shape, side: Int, runs: Int,
                                          threads: Int) throws -> [ConvolutionChoice: Double] {
        let layer = SingleLayer(g, input: x)
        let hasThreeTaps = g.kernelH == 3 || g.kernelW == 3
        let candidates: [ConvolutionChoice] = [.direct] + (hasThreeTaps ? [.winograd(tile: 4), .winograd(tile: 6)]
                                                                          : [.winograd(tile: nil)])
        var times: [ConvolutionChoice: Double] = [:]
        for choice in candidates {
            let compiled = try layer.compile(choice, side: side, tiles: .builtIn)
            if choice != .direct && compiled.winogradLayers == 0 { continue }
            times[choice] = try layer.time(compiled, runs: runs, threads: threads)
        }
        return times
    }

    /// One convolution by `choice` at each register tile of this CPU's kernel level (median of `runs`, seconds), and
    /// the layer's tile key (`TileTuning.key`).
    package static func tileChoices(_ g: ConvGeometry, input x: Shape, side: Int, choice: ConvolutionChoice,
                                   runs: Int, threads: Int) throws -> (key: String, times: [TileShape: Double]) {
        let layer = SingleLayer(g, input: x)
        let key = try layer.compile(choice, side: side, tiles: .builtIn).tiles[0].key
        var times: [TileShape: Double] = [:]
        for tile in Kernels.current.tiles {
            let compiled = try layer.compile(choice, side: side, tiles: TileTuning(known: [key: tile], measure: false))
            times[tile] = try layer.time(compiled, runs: runs, threads: threads)
        }
        return (key, times)
    }

    /// A network of one convolution (+ bias, ReLU) with random weights and input, for the per-layer timings.
    struct SingleLayer {
        let g: ConvGeometry, x: Shape, weights: [Float], input: Tensor

        init(_ g: ConvGeometry, input x: Shape) {
            var rng = SystemRandomNumberGenerator()
            (self.g, self.x) = (g, x)
            weights = (0..<(g.outChannels * g.depth)).map { _ in Float.random(in: -0.1...0.1, using: &rng) }
            input = Tensor(shape: [x.n, x.h, x.w, x.c],
                           scalars: (0..<x.count).map { _ in Float.random(in: -1...1, using: &rng) })
        }

        func compile(_ choice: ConvolutionChoice, side: Int, tiles: TileTuning) throws -> CompiledGraph {
            let b = GraphBuilder()
            let v = b.input(channels: g.inChannels).convolution(
                "c", g.outChannels, kernel: (g.kernelH, g.kernelW), stride: g.strideH, padding: (g.padH, g.padW),
                bias: true, batchNorm: nil, activation: .relu)
            let table = AlgorithmTable(cpu: "", isa: "", choices: [AlgorithmTable.key(g, side: side): choice])
            let (g, weights) = (g, weights)
            return try CompiledGraph(graph: b.finish(output: v), algorithms: .measured(table), usualInputSize: x.h,
                                     tiles: tiles) {
                $0.hasSuffix("bias") ? [Float](repeating: 0.1, count: g.outChannels) : weights
            }
        }

        func time(_ compiled: CompiledGraph, runs: Int, threads: Int) throws -> Double {
            _ = try compiled.run(input, threads: threads)
            return median(try (0..<runs).map { _ in try seconds { _ = try compiled.run(input, threads: threads) } })
        }
    }

    /// The process's peak resident memory so far, in MB.
    package static func peakResidentMegabytes() -> Double {
        var usage = rusage()
        #if os(Linux)
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_maxrss) / 1024  // kilobytes on Linux
        #else
        getrusage(RUSAGE_SELF, &usage)
        return Double(usage.ru_maxrss) / 1_048_576  // bytes on macOS
        #endif
    }
}

extension Graph {
    /// A node's kind as the profiles group it: "conv 3×3/2" (with "+BN" for a convolution that carries a
    /// BatchNorm, when `batchNorm` is set), "max pool", "linear", …
    package func kind(of node: Int, batchNorm: Bool = false) -> String {
        switch nodes[node].operation {
        case let .convolution(g, p, _):
            return "conv \(g.kernelH)×\(g.kernelW)/\(g.strideH)" + (batchNorm && p.batchNorm != nil ? "+BN" : "")
        case .maxPool: return "max pool"
        case .averagePool: return "average pool"
        case .linear: return "linear"
        case .residual: return "residual"
        case .concat: return "concat"
        case .batchNorm: return "batch norm"
        case .dropout: return "dropout"
        case .globalAveragePool: return "global pool"
        case .l2Normalize: return "L2 normalise"
        case .prelu: return "PReLU"
        case .softmax: return "softmax"
        case .input: return "input"
        }
    }
}

extension AlgorithmTable {
    /// Writes `self` where every later run on this CPU and kernel level reads it (``url``).
    package func save() throws {
        let url = Self.url
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try FileOutput.write(try encoder.encode(self), to: url)
    }
}
