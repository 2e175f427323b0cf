import Foundation

/// The end of a network in evaluation mode, from one layer's output to an output, with the backward pass of data
/// gradients back to that layer — what a class activation map needs (∂target/∂activations), and nothing more: no
/// parameter gradients, BatchNorm on its running statistics (folded, as inference runs it), dropout the identity.
///
/// The layer must be a cut of the graph (every path from the input to the output passes through it: any stage's
/// output is one). The forward pass up to the layer is inference's (`CompiledGraph.run(output:)`); this runs the
/// rest again, keeping the values its backward pass reads (ReLU outputs, max-pool inputs, the normalised output).
package struct GradientTail: Sendable {
    /// A tail node's work, its parameters folded and ready.
    enum Step: Sendable {
        /// Folded OIHW weights (the data gradient reads them), packed for the forward pass.
        case convolution(PackedConvolution, weights: [Float], ConvGeometry, Activation)
        case linear(inFeatures: Int, outFeatures: Int, weights: [Float], bias: [Float]?)
        case affine(scale: [Float], shift: [Float])
        case identity
        case shared(SharedOperation)
    }

    package let graph: Graph
    /// The node whose output is explained, and the output the backward pass starts from.
    package let layer: Int, output: Int
    /// The nodes after `layer` that `output` depends on, in order, with their steps.
    let nodes: [Int]
    let steps: [Int: Step]

    package enum CutError: Error, Equatable {
        case notACut(node: String)
        /// MTCNN's PReLU, softmax and ceil-mode pools have no backward pass.
        case inferenceOnly(node: String)
    }

    /// - Parameter parameter: the graph's parameters by name (unfolded, as a checkpoint holds them).
    package init(graph: Graph, layer: Int, output: Int, parameter: (String) throws -> [Float]) throws {
        precondition(layer < output, "the layer must come before the output")
        var needed = Set([output])
        for i in stride(from: output, to: layer, by: -1) where needed.contains(i) {
            for j in graph.nodes[i].inputs {
                guard j >= layer else { throw CutError.notACut(node: graph.nodes[layer].name) }
                needed.insert(j)
            }
        }
        let order = needed.filter { $0 > layer }.sorted()
        var steps: [Int: Step] = [:]
        for i in order {
            switch graph.nodes[i].operation {
            case .prelu, .softmax, .maxPool(_, _, true): throw CutError.inferenceOnly(node: graph.nodes[i].name)
            default: steps[i] = try Self.step(graph.nodes[i].operation, parameter)
            }
        }
        (self.graph, self.layer, self.output, nodes, self.steps) = (graph, layer, output, order, steps)
    }

    static func step(_ operation: Operation, _ parameter: (String) throws -> [Float]) throws -> Step {
        switch operation {
        case .input:
            preconditionFailure("the input is never after a layer")
        case let .convolution(g, p, activation):
            let (weights, bias) = try CompiledGraph.folded(g, p, parameter)
            let packed = PackedConvolution(geometry: g, weights: weights, bias: bias, activation: activation)
            return .convolution(packed, weights: weights, g, activation)
        case let .linear(inFeatures, outFeatures, weight, bias):
            return .linear(inFeatures: inFeatures, outFeatures: outFeatures, weights: try parameter(weight),
                           bias: try bias.map(parameter))
        case let .batchNorm(prefix, epsilon):
            let (scale, shift) = try CompiledGraph.batchNormAffine(prefix, epsilon, parameter)
            return .affine(scale: scale, shift: shift)
        case .dropout:
            return .identity
        case .maxPool, .averagePool, .concat, .residual, .globalAveragePool, .l2Normalize:
            return .shared(SharedOperation(operation)!)
        case .prelu, .softmax:
            preconditionFailure("refused by init")
        }
    }

    /// Runs the tail on the layer's activations (`n × h × w × c`, NHWC) and differentiates `seed(output)`:
    /// returns the output (`n × channels` for a 1 × 1 map) and ∂/∂activations (NHWC, the activations' shape).
    package func run(activations: Tensor, threads: Int = Parallel.defaultThreads,
                     seed: (Tensor) throws -> [Float]) throws -> (output: Tensor, gradient: Tensor) {
        let a = activations.shape
        precondition(a.count == 4 && a[3] == graph.nodes[layer].channels, "activations must be NHWC")
        guard let shapes = tailShapes(a) else {
            preconditionFailure("the tail does not fit activations of \(a)")
        }
        let pass = TailPass(tail: self, shapes: shapes, threads: max(1, threads))
        activations.scalars.withUnsafeBufferPointer { pass.values[layer].pointer.update(from: $0.baseAddress!,
                                                                                          count: $0.count) }
        pass.forward()
        let out = shapes[output]
        let y = Tensor(shape: out.h == 1 && out.w == 1 ? [out.n, out.c] : [out.n, out.h, out.w, out.c],
                       scalars: Array(UnsafeBufferPointer(start: pass.values[output].pointer, count: out.count)))
        let dy = try seed(y)
        precondition(dy.count == out.count, "one gradient value per output value")
        dy.withUnsafeBufferPointer { pass.gradients[output].pointer.update(from: $0.baseAddress!, count: $0.count) }
        pass.backward()
        let dx = Array(UnsafeBufferPointer(start: pass.gradients[layer].pointer, count: activations.count))
        return (y, Tensor(shape: a, scalars: dx))
    }

    /// Every tail node's shape from the layer's (nodes before the layer keep an empty placeholder).
    func tailShapes(_ a: [Int]) -> [Shape]? {
        var shapes = [Shape](repeating: Shape(n: 0, h: 0, w: 0, c: 0), count: output + 1)
        shapes[layer] = Shape(n: a[0], h: a[1], w: a[2], c: a[3])
        for i in nodes {
            let node = graph.nodes[i], x = shapes[node.inputs[0]]
            var s = Shape(n: x.n, h: x.h, w: x.w, c: node.channels)
            switch node.operation {
            case let .convolution(g, _, _): (s.h, s.w) = g.outputSize(h: x.h, w: x.w)
            case let .maxPool(k, stride, ceilMode):
                s.h = Pooling.maxPoolOutputSize(x.h, kernel: k, stride: stride, ceilMode: ceilMode)
                s.w = Pooling.maxPoolOutputSize(x.w, kernel: k, stride: stride, ceilMode: ceilMode)
            case let .averagePool(k, stride, p): (s.h, s.w) = ((x.h + 2 * p - k) / stride + 1,
                                                               (x.w + 2 * p - k) / stride + 1)
            case .globalAveragePool: (s.h, s.w) = (1, 1)
            default: break
            }
            if s.h <= 0 || s.w <= 0 { return nil }
            shapes[i] = s
        }
        return shapes
    }
}

/// One run of a `GradientTail`: every tail node's values, then their gradients (zeroed, accumulated into).
private struct TailPass {
    let tail: GradientTail
    let shapes: [Shape]
    let threads: Int
    var values: [AlignedBuffer]
    var gradients: [AlignedBuffer]
    let zeros: AlignedBuffer

    init(tail: GradientTail, shapes: [Shape], threads: Int) {
        (self.tail, self.shapes, self.threads) = (tail, shapes, threads)
        let used = Set(tail.nodes + [tail.layer])
        values = shapes.indices.map { AlignedBuffer(count: used.contains($0) ? shapes[$0].count : 0) }
        gradients = shapes.indices.map { AlignedBuffer(count: used.contains($0) ? shapes[$0].count : 0, zeroed: true) }
        zeros = AlignedBuffer(count: (tail.graph.nodes.map(\.channels).max() ?? 0) + 16, zeroed: true)
    }

    func map(_ i: Int) -> FeatureMap { view(values[i], i) }
    func gradient(_ i: Int) -> FeatureMap { view(gradients[i], i) }
    func view(_ buffer: AlignedBuffer, _ i: Int) -> FeatureMap {
        let s = shapes[i]
        return FeatureMap(base: buffer.pointer, n: s.n, h: s.h, w: s.w, c: s.c)
    }

    func forward() {
        for i in tail.nodes {
            let inputs = tail.graph.nodes[i].inputs, y = map(i), s = shapes[i]
            switch tail.steps[i]! {
            case let .convolution(conv, _, _, _):
                conv.run(input: map(inputs[0]), output: y, zeros: zeros.pointer, threads: threads)
            case let .linear(inFeatures, outFeatures, weights, bias):
                weights.withUnsafeBufferPointer { w in
                    let x = MatrixView(rowMajor: values[inputs[0]].pointer, rows: s.n, columns: inFeatures)
                    let wt = MatrixView(rowMajor: w.baseAddress!, rows: outFeatures, columns: inFeatures).transposed
                    GEMM.multiply(x, wt, into: y.base, ldc: outFeatures, accumulate: false, threads: threads)
                }
                if let bias { for r in 0..<s.n { for o in 0..<outFeatures { y.base[r * outFeatures + o] += bias[o] } } }
            case let .affine(scale, shift):
                Elementwise.affine(input: map(inputs[0]), output: y, scale: scale, shift: shift, threads: threads)
            case .identity:
                y.base.update(from: values[inputs[0]].pointer, count: s.count)
            case let .shared(operation):
                operation.run(inputs.map(map), output: y, threads: threads)
            }
        }
    }

    func backward() {
        for i in tail.nodes.reversed() {
            let node = tail.graph.nodes[i], dy = gradient(i), s = shapes[i]
            switch tail.steps[i]! {
            case let .convolution(_, weights, g, activation):
                if activation == .relu {
                    ReLU.mask(dy.base, output: values[i].pointer, count: s.count, threads: threads)
                }
                ConvolutionGradient.data(outputGradient: dy, weights: weights, geometry: g,
                                         inputGradient: gradient(node.inputs[0]), threads: threads)
            case let .linear(inFeatures, outFeatures, weights, _):
                weights.withUnsafeBufferPointer { w in
                    GEMM.multiply(MatrixView(rowMajor: dy.base, rows: s.n, columns: outFeatures),
                                  MatrixView(rowMajor: w.baseAddress!, rows: outFeatures, columns: inFeatures),
                                  into: gradients[node.inputs[0]].pointer, ldc: inFeatures, accumulate: true,
                                  threads: threads)
                }
            case let .affine(scale, _):
                let dx = gradient(node.inputs[0])
                for p in 0..<dy.pixels { for c in 0..<s.c { dx.base[p * s.c + c] += dy.base[p * s.c + c] * scale[c] } }
            case .identity:
                add(dy, into: gradient(node.inputs[0]), scale: 1)
            case let .shared(operation):
                backward(operation, i, node.inputs, dy)
            }
        }
    }

    func backward(_ operation: SharedOperation, _ i: Int, _ inputs: [Int], _ dy: FeatureMap) {
        switch operation {
        case let .maxPool(kernel, stride, _):
            PoolingGradient.maxPool(input: map(inputs[0]), outputGradient: dy, inputGradient: gradient(inputs[0]),
                                    kernel: kernel, stride: stride, threads: threads)
        case let .averagePool(kernel, stride, padding):
            PoolingGradient.averagePool(outputGradient: dy, inputGradient: gradient(inputs[0]), kernel: kernel,
                                        stride: stride, padding: padding, threads: threads)
        case .concat:
            var offset = 0
            for j in inputs {
                add(dy.channels(offset, shapes[j].c), into: gradient(j), scale: 1)
                offset += shapes[j].c
            }
        case let .residual(scale, activation):
            if activation == .relu { ReLU.mask(dy.base, output: values[i].pointer, count: dy.pixels * dy.c,
                                               threads: threads) }
            add(dy, into: gradient(inputs[0]), scale: 1)
            add(dy, into: gradient(inputs[1]), scale: scale)
        case .globalAveragePool:
            PoolingGradient.globalAveragePool(outputGradient: dy, inputGradient: gradient(inputs[0]), threads: threads)
        case .l2Normalize:
            L2NormalizeGradient.backward(input: map(inputs[0]), output: map(i), outputGradient: dy,
                                         inputGradient: gradient(inputs[0]))
        case .softmax:
            preconditionFailure("refused by init")
        }
    }

    /// dst += scale · src, pixel by pixel (src may be a channel slice).
    func add(_ src: FeatureMap, into dst: FeatureMap, scale: Float) {
        for p in 0..<src.pixels {
            let (a, b) = (src.base + p * src.pixelStride, dst.base + p * dst.pixelStride)
            for c in 0..<src.c { b[c] += scale * a[c] }
        }
    }
}
