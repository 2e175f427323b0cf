import InceptionEngine
import Testing

/// The compiler's rewrites — BatchNorm folding, residual folding into the convolution epilogue, concatenation
/// by channel slices, liveness-based arena reuse — against the same network evaluated op by op with the
/// reference kernels.
struct CompilerTests {
    /// input → stem conv3×3+BN+ReLU → [a: conv3×3+BN+ReLU | b: avg pool | c: conv1×1 → (conv1×3 | conv3×1)] → concat
    ///       → residual(x, 0.3 · conv1×1 with bias) → avg pool → BN → global pool → linear
    func network() -> Graph {
        let g = GraphBuilder()
        let x = g.input(channels: 6)
        let stem = x.convolution("stem", 10, kernel: (3, 3), padding: (1, 1), bias: false, batchNorm: "stem_bn",
                                 activation: .relu)
        let c = stem.convolution("c", 7, kernel: (1, 1), bias: false, batchNorm: "c_bn", activation: .relu)
        let same = concat(
            stem.convolution("a2", 5, kernel: (3, 3), padding: (1, 1), bias: false, batchNorm: "a2_bn",
                             activation: .relu),
            stem.averagePool(3, stride: 1, padding: 1),
            concat(c.convolution("c13b", 4, kernel: (1, 3), padding: (0, 1), bias: false, batchNorm: nil,
                                 activation: .relu),
                   c.convolution("c31b", 3, kernel: (3, 1), padding: (1, 0), bias: true, batchNorm: nil,
                                 activation: .relu)))
        let up = same.convolution("up", 10, kernel: (1, 1), bias: true, batchNorm: nil, activation: .identity)
        let residual = stem.residual(up, scale: 0.3, activation: .relu)
        let head = residual.batchNorm("head_bn").globalAveragePool().linear("fc", 9)
        return g.finish(output: head)
    }

    @Test(arguments: [(1, 9, 11), (3, 7, 5)])
    func compiledGraphMatchesOpByOpReference(_ shape: (Int, Int, Int)) throws {
        let graph = network()
        var rng = SeededRandom(99)
        var weights: [String: [Float]] = [:]
        for spec in graph.parameters {
            let last = spec.name.split(separator: ".").last!
            weights[spec.name] = last == "running_var" ? rng.array(spec.count, 0.5, 2)
                : last == "weight" && spec.shape.count == 1 ? rng.array(spec.count, 0.5, 1.5) : rng.array(spec.count)
        }
        let compiled = try CompiledGraph(graph: graph) { weights[$0]! }
        let input = rng.tensor([shape.0, shape.1, shape.2, 6])
        let got = try compiled.run(input, threads: 2)

        // The same network, op by op, with BatchNorm applied as its own step.
        func bn(_ t: Tensor, _ p: String, relu: Bool) -> Tensor {
            var t = t
            let c = t.shape[3]
            for i in t.scalars.indices {
                let ch = i % c
                let s = weights["\(p).weight"]![ch] / (weights["\(p).running_var"]![ch] + 1e-3).squareRoot()
                let v = (t.scalars[i] - weights["\(p).running_mean"]![ch]) * s + weights["\(p).bias"]![ch]
                t.scalars[i] = relu ? max(0, v) : v
            }
            return t
        }
        func conv(_ t: Tensor, _ name: String, _ cout: Int, _ k: (Int, Int), _ pad: (Int, Int), bias: Bool,
                  scale: Float = 1, residual: Tensor? = nil, relu: Bool) -> Tensor {
            let g = ConvGeometry(inChannels: t.shape[3], outChannels: cout, kernel: k, padding: pad)
            return Reference.convolution(t, weights: weights["\(name).weight"]!,
                                         bias: bias ? weights["\(name).bias"] : nil,
                                         geometry: g, scale: scale, residual: residual,
                                         activation: relu ? .relu : .identity)
        }
        func cat(_ ts: [Tensor]) -> Tensor {
            let pixels = ts[0].count / ts[0].shape[3]
            var out: [Float] = []
            for p in 0..<pixels { for t in ts { let c = t.shape[3]; out += t.scalars[(p * c)..<((p + 1) * c)] } }
            return Tensor(shape: Array(ts[0].shape.dropLast()) + [ts.reduce(0) { $0 + $1.shape[3] }], scalars: out)
        }
        let stem = bn(conv(input, "stem", 10, (3, 3), (1, 1), bias: false, relu: false), "stem_bn", relu: true)
        let c = bn(conv(stem, "c", 7, (1, 1), (0, 0), bias: false, relu: false), "c_bn", relu: true)
        let same = cat([
            bn(conv(stem, "a2", 5, (3, 3), (1, 1), bias: false, relu: false), "a2_bn", relu: true),
            Reference.averagePool(stem, kernel: 3, stride: 1, padding: 1),
            cat([conv(c, "c13b", 4, (1, 3), (0, 1), bias: false, relu: true),
                 conv(c, "c31b", 3, (3, 1), (1, 0), bias: true, relu: true)]),
        ])
        let residual = conv(same, "up", 10, (1, 1), (0, 0), bias: true, scale: 0.3, residual: stem, relu: true)
        let pooled = Reference.globalAveragePool(bn(residual, "head_bn", relu: false))
        let expected = Reference.convolution(pooled, weights: weights["fc.weight"]!, bias: weights["fc.bias"]!,
                                             geometry: ConvGeometry(inChannels: 10, outChannels: 9, kernel: (1, 1)),
                                             activation: .identity)
        #expect(got.shape == [shape.0, 9])
        #expect(relativeError(got.scalars, expected.scalars) < 1e-5)
        // A second call reuses the cached plan and a pooled arena, and must give the same bits.
        #expect(try compiled.run(input, threads: 2) == got)
    }

    @Test func residualFoldsIntoTheConvolution() throws {
        let g = GraphBuilder()
        let x = g.input(channels: 4)
        let up = x.convolution("up", 4, kernel: (1, 1), bias: true, batchNorm: nil, activation: .identity)
        let graph = g.finish(output: x.residual(up, scale: 0.5, activation: .relu))
        let compiled = try CompiledGraph(graph: graph) { name in name.hasSuffix("bias") ? [0, 0, 0,
            0] : [Float](repeating: 0.25, count: 16) }
        #expect(compiled.fusedResiduals == 1)
    }

    /// Sibling 1×1 convolutions of one input run as one GEMM whose panels write into each sibling's own place
    /// (a concatenation slice, a plain buffer): bitwise what separate convolutions give, for every output node.
    @Test func siblingConvolutionsMergeIntoOneGEMMWithTheSameBits() throws {
        let g = GraphBuilder()
        let x = g.input(channels: 12).convolution("stem", 20, kernel: (3, 3), padding: (1, 1), bias: true,
                                                  batchNorm: nil,
                                                  activation: .relu)
        func one(_ name: String, _ c: Int, bias: Bool = false) -> Value {
            x.convolution(name, c, kernel: (1, 1), bias: bias, batchNorm: bias ? nil : "\(name)_bn", activation: .relu)
        }
        let a = one("a", 16), b = one("b", 7, bias: true), c = one("c", 32),
            d = one("d", 5)  // b, d: not multiples of 16
        let deep = c.convolution("deep", 9, kernel: (3, 3), padding: (1, 1), bias: true, batchNorm: nil,
                                 activation: .relu)
        let graph = g.finish(output: concat(a, b, deep, d, x.averagePool(3, stride: 1, padding: 1)))
        var rng = SeededRandom(7)
        var weights: [String: [Float]] = [:]
        for spec in graph.parameters {
            weights[spec.name] = spec.name.hasSuffix("running_var") ? rng.array(spec.count, 0.5,
                2) : rng.array(spec.count)
        }
        let merged = try CompiledGraph(graph: graph) { weights[$0]! }
        let separate = try CompiledGraph(graph: graph, mergeSiblings: false) { weights[$0]! }
        #expect(merged.mergedConvolutions == 3 && separate.mergedConvolutions == 0)  // a, c and one ragged sibling
        for shape in [[1, 6, 5, 12], [2, 3, 7, 12]] {
            let input = rng.tensor(shape)
            for output in graph.nodes.indices.dropFirst() {
                #expect(try merged.run(input, output: output, threads: 2) == separate.run(input, output: output,
                    threads: 2),
                        "output node \(output)")
            }
        }
    }

    @Test func subgraphCutsOneStage() throws {
        let g = GraphBuilder()
        let x = g.input(channels: 3).scope("first") { $0.maxPool(3, stride: 2) }
        let y = x.scope("second") { v in concat(v.maxPool(3, stride: 1), v.averagePool(3, stride: 1, padding: 0)) }
        let graph = g.finish(output: y)
        let sub = try #require(graph.subgraph(stage: "second"))
        #expect(sub.nodes.count == 4 && sub.inputChannels == 3 && sub.outputChannels == 6)
        #expect(graph.subgraph(stage: "missing") == nil)
    }
}
