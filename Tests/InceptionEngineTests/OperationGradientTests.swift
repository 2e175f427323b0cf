import InceptionEngine
import Testing

/// The backward pass of the operations that the convolution tests do not reach, each alone in a graph and each
/// against the derivative itself: central differences of L = Σ r · op(x) (r fixed and random), computed in Double
/// from the forward pass. BatchNorm in training mode (batch statistics, so every input moves every output of its
/// channel), L2 normalisation (the face model's embedding), and dropout (the mask fixed by the step's seed).
@Suite struct OperationGradientTests {
    /// ∂L/∂input and ∂L/∂(each parameter) of `graph`'s output against central differences at step `h`, on a few
    /// elements of each; relative error below `tolerance`.
    func checkGradients(_ graph: Graph, input shape: [Int], h: Float = 1e-2, tolerance: Double = 5e-4) throws {
        var rng = SeededRandom(11)
        let x = rng.tensor(shape)
        var values: [String: [Float]] = [:]
        for spec in graph.parameters {
            switch spec.role {
            case .normScale: values[spec.name] = rng.array(spec.count, 0.5, 1.5)
            case .runningVariance: values[spec.name] = [Float](repeating: 1, count: spec.count)
            default: values[spec.name] = rng.array(spec.count, -0.5, 0.5)
            }
        }
        let trainer = TrainingGraph(graph: graph, values: values)
        let outputShape = try graph.shapes(n: shape[0], h: shape[1], w: shape[2])[graph.output]
        let r = rng.array(outputShape.count)
        let (_, dx) = try trainer.backward(x, output: "output", seed: 5, threads: 2) { _ in r }
        let gradients = trainer.gradients
        func loss(_ x: Tensor, _ values: [String: [Float]]) throws -> Double {
            let probe = TrainingGraph(graph: graph, values: values)
            let (y, _) = try probe.backward(x, output: "output", seed: 5, threads: 2) { _ in r }
            return zip(y.scalars, r).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        let every = max(1, x.count / 12)
        var numeric: [Float] = [], analytic: [Float] = []
        for i in stride(from: 0, to: x.count, by: every) {
            var (p, m) = (x, x)
            p.scalars[i] += h; m.scalars[i] -= h
            numeric.append(Float((try loss(p, values) - loss(m, values)) / Double(2 * h)))
            analytic.append(dx.scalars[i])
        }
        #expect(relativeError(analytic, numeric) < tolerance, "∂L/∂input")
        for spec in graph.parameters where !spec.isBuffer {
            var (numeric, analytic): ([Float], [Float]) = ([], [])
            for i in 0..<min(spec.count, 6) {
                var (p, m) = (values, values)
                p[spec.name]![i] += h; m[spec.name]![i] -= h
                numeric.append(Float((try loss(x, p) - loss(x, m)) / Double(2 * h)))
                analytic.append(gradients[spec.name]![i])
            }
            #expect(relativeError(analytic, numeric) < tolerance, "∂L/∂\(spec.name)")
        }
    }

    func graph(_ body: (Value) -> Value, channels: Int) -> Graph {
        let b = GraphBuilder()
        return b.finish(outputs: ["output": body(b.input(channels: channels))], primary: "output")
    }

    @Test func batchNormOnBatchStatisticsIsTheDerivative() throws {
        try checkGradients(graph({ $0.batchNorm("bn") }, channels: 5), input: [4, 3, 3, 5])
        // The face model's bottleneck: BatchNorm over a batch of vectors (1×1 maps).
        try checkGradients(graph({ $0.batchNorm("bn") }, channels: 7), input: [6, 1, 1, 7])
    }

    @Test func l2NormalisationIsTheDerivative() throws {
        try checkGradients(graph({ $0.linear("bottleneck", 9).l2Normalize() }, channels: 6), input: [3, 1, 1, 6])
    }

    @Test func dropoutIsTheDerivativeOfItsMask() throws {
        let g = graph({ $0.dropout(0.4) }, channels: 8)
        try checkGradients(g, input: [4, 2, 2, 8])
        // Inverted dropout: each gradient is r / (1 − p) where the input was kept, 0 where it was dropped.
        var rng = SeededRandom(2)
        let x = rng.tensor([4, 2, 2, 8]), r = rng.array(x.count)
        let (y, dx) = try TrainingGraph(graph: g, values: [:]).backward(x, output: "output", seed: 9) { _ in r }
        let dropped = y.scalars.filter { $0 == 0 }.count
        #expect(dropped > 0 && dropped < x.count)
        for i in 0..<x.count {
            let kept = y.scalars[i] != 0
            #expect(abs(dx.scalars[i] - (kept ? r[i] / 0.6 : 0)) <= 1e-6 * max(1, abs(r[i])))
            if kept { #expect(abs(y.scalars[i] - x.scalars[i] / 0.6) <= 1e-6) }
        }
    }
}
