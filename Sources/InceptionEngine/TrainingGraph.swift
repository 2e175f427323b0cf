import Foundation

/// A graph in training mode: the forward pass on batch statistics, keeping what the backward pass needs, then
/// reverse-mode differentiation node by node down to every parameter. The autograd "tape" is the graph itself:
/// nodes are already in topological order, so the backward pass walks them in reverse, and each operation's
/// backward kernel sits beside its forward one (`ConvolutionGradient`, `BatchNormTraining`, `PoolingGradient`, …).
///
/// Parameters are kept by graph name in PyTorch's layouts (OIHW convolution weights, `[out, in]` linear weights),
/// so checkpoints need no conversion; BatchNorm running statistics are updated as in PyTorch's train mode
/// (`running = (1 − momentum) · running + momentum · batch`, the variance unbiased).
package final class TrainingGraph {
    package let graph: Graph
    /// Every parameter and buffer by graph name.
    package var values: [String: [Float]]
    /// ∂loss/∂parameter of the last `step`, for every trainable parameter.
    package private(set) var gradients: [String: [Float]]
    /// PyTorch's BatchNorm momentum (0.1); TF-slim's decay 0.9997 is momentum 0.0003.
    package var batchNormMomentum: Float = 0.1
    /// Replaces the graph's dropout rates when set (0 turns dropout off).
    package var dropoutRate: Float?
    /// For comparisons with another implementation: that implementation's max-pool choices (see
    /// `PoolingGradient.maxPool`), the k-th array for the k-th max-pool node. Never set in training.
    package var maxPoolRouting: [[Int32]]?
    /// For comparisons with another implementation: which ReLU inputs it found positive (1 or 0 per element, NCHW
    /// as PyTorch), by the name of the node whose ReLU it is. Never set in training.
    package var reluMasks: [String: [Float]]?
    /// Synchronised BatchNorm: sums the batch statistics (and their gradients' sums) over every replica of a
    /// data-parallel job; nil: each replica normalises with its own batch (as PyTorch's DDP by default).
    package var batchNormReplicas: BatchNormTraining.ReplicaSum?
    /// Called after each node's backward, in backward order: the node's parameter gradients are then final (data
    /// parallelism starts reducing them while the rest of the backward pass runs).
    package var nodeBackwardDone: ((_ node: Int) -> Void)?
    /// For profiling: called after each node's forward (`backward` false) and backward work with its seconds.
    package var timer: ((_ node: Int, _ backward: Bool, _ seconds: Double) -> Void)?
    /// The step's feature maps and their gradients, kept from one step to the next (see `MapPool`).
    let pool = MapPool()

    package init(graph: Graph, values: [String: [Float]]) {
        for spec in graph.parameters {
            precondition(values[spec.name]?.count == spec.count, "\(spec.name): expected \(spec.count) values")
        }
        self.graph = graph
        self.values = values
        gradients = [:]
        for spec in graph.parameters where !spec.isBuffer {
            gradients[spec.name] = [Float](repeating: 0, count: spec.count)
        }
    }

    package struct StepResult: Sendable {
        /// Mean softmax cross-entropy of the output over the batch.
        package var loss: Double
        /// `n × classes`.
        package var logits: Tensor
        /// The auxiliary output's cross-entropy, when the step had one.
        package var auxiliaryLoss: Double?
        /// What was differentiated: `loss` + weight · `auxiliaryLoss`.
        package var total: Double
    }

    /// One forward pass in training mode on an NHWC batch, the loss against `labels`, and the backward pass:
    /// `gradients` then holds this batch's gradients. Running statistics are updated. `seed` drives dropout.
    /// `auxiliary`: a second output whose cross-entropy against the same labels is added with `weight` (TF-slim's
    /// auxiliary classifier, 0.4); the backward pass then starts at both outputs.
    package func step(_ input: Tensor, labels: [Int], labelSmoothing: Float = 0, output: OutputName = "logits",
                     auxiliary: (output: OutputName, weight: Float)? = nil,
                     seed: UInt64 = 0, threads: Int = Parallel.defaultThreads) throws -> StepResult {
        precondition(input.shape.count == 4 && input.shape[3] == graph.inputChannels, "input must be NHWC")
        let names = [output] + (auxiliary.map { [$0.output] } ?? [])
        let targets = names.map { name in
            guard let target = graph.outputs[name] else { preconditionFailure("the graph has no output \(name)") }
            precondition(labels.allSatisfy { $0 >= 0 && $0 < graph.nodes[target].channels },
                         "labels in 0..<\(graph.nodes[target].channels)")
            return target
        }
        let shapes = try graph.shapes(n: input.shape[0], h: input.shape[1], w: input.shape[2])
        precondition(labels.count == input.shape[0], "one label per image")
        try Self.checkMemory(shapes)
        var result: StepResult? = nil
        _ = differentiate(input, targets: targets, shapes: shapes, seed: seed, threads: threads,
                          inputGradient: false) { maps in
            let (loss, values, gradient) = Self.crossEntropy(maps[0], labels: labels, smoothing: labelSmoothing)
            result = StepResult(loss: loss, logits: values, auxiliaryLoss: nil, total: loss)
            guard let auxiliary else { return [gradient] }
            let (auxLoss, _, auxGradient) = Self.crossEntropy(maps[1], labels: labels, smoothing: labelSmoothing)
            result!.auxiliaryLoss = auxLoss
            result!.total = loss + Double(auxiliary.weight) * auxLoss
            return [gradient, auxGradient.map { $0 * auxiliary.weight }]
        }
        return result!
    }

    /// Refuses a step whose maps cannot fit: every node's values are kept for the backward pass, and gradient maps
    /// of about the same size come and go beside them.
    static func checkMemory(_ shapes: [Shape]) throws(MemoryError) {
        let floats = shapes.reduce(0) { $0 + $1.count }
        guard let n = shapes.first?.n, let h = shapes.first?.h, let w = shapes.first?.w else { return }
        try MemoryLimit.check(2 * 4 * floats, for: "a training step of \(n) images at \(h)×\(w)")
    }

    /// `checkMemory` for a step of `batch` images at `size` × `size`, before its input is made.
    package static func checkMemory(_ graph: Graph, batch: Int, size: Int) throws {
        try checkMemory(try graph.shapes(n: batch, h: size, w: size))
    }

    /// A forward pass in training mode, then the backward pass from ∂L/∂output = `outputGradient(output)`;
    /// `gradients` then holds the parameters' gradients. Returns the output and ∂L/∂input.
    package func backward(_ input: Tensor, output: OutputName, seed: UInt64 = 0, threads: Int = Parallel.defaultThreads,
                         outputGradient: (Tensor) -> [Float]) throws -> (output: Tensor, inputGradient: Tensor) {
        guard let target = graph.outputs[output] else { preconditionFailure("the graph has no output \(output)") }
        let shapes = try graph.shapes(n: input.shape[0], h: input.shape[1], w: input.shape[2])
        var out: Tensor? = nil
        let dx = differentiate(input, targets: [target], shapes: shapes, seed: seed, threads: threads,
                               inputGradient: true) { y in
            let s = shapes[target]
            let scalars = Array(UnsafeBufferPointer(start: y[0].base, count: s.count))
            let t = Tensor(shape: [s.n, s.h, s.w, s.c], scalars: scalars)
            out = t
            return [outputGradient(t)]
        }
        return (out!, Tensor(shape: input.shape, scalars: dx))
    }

    /// The forward pass, then the backward pass from ∂L/∂(each target) = `outputGradients(targets' maps)`, in order.
    private func differentiate(_ input: Tensor, targets: [Int], shapes: [Shape], seed: UInt64, threads: Int,
                               inputGradient: Bool, _ outputGradients: ([FeatureMap]) -> [[Float]]) -> [Float] {
        var pass = Pass(graph: self, shapes: shapes, targets: targets, threads: threads, seed: seed)
        input.scalars.withUnsafeBufferPointer {
            pass.outputs[0]!.pointer.update(from: $0.baseAddress!, count: input.count)
        }
        pass.forward()
        let seeds = outputGradients(targets.map(pass.map))
        for name in gradients.keys { gradients[name]!.withUnsafeMutableBufferPointer { $0.update(repeating: 0) } }
        pass.keepInputGradient = inputGradient
        pass.backward(outputGradients: seeds)
        pass.releaseAll()
        pool.endStep()
        return pass.inputGradient
    }

    /// Returns the step's buffers, kept for the next step, to the allocator (before validation, say).
    package func releaseBuffers() { pool.removeAll() }

    /// Softmax cross-entropy with label smoothing (targets (1 − ε) · one-hot + ε / classes, as PyTorch's
    /// `cross_entropy(label_smoothing: ε)`), averaged over the batch, with its gradient, in Double.
    static func crossEntropy(_ logits: FeatureMap, labels: [Int], smoothing: Float) -> (Double, Tensor, [Float]) {
        let (n, k) = (logits.n, logits.c)
        var values = [Float](repeating: 0, count: n * k), gradient = [Float](repeating: 0, count: n * k)
        var loss = 0.0
        let eps = Double(smoothing)
        for b in 0..<n {
            let l = logits.pixel(b, 0, 0)
            let top = (0..<k).map { Double(l[$0]) }.max()!
            let lse = top + log((0..<k).reduce(0.0) { $0 + exp(Double(l[$1]) - top) })
            for j in 0..<k {
                let q = (j == labels[b] ? 1 - eps : 0) + eps / Double(k)
                let logp = Double(l[j]) - lse
                loss -= q * logp
                gradient[b * k + j] = Float((exp(logp) - q) / Double(n))
                values[b * k + j] = l[j]
            }
        }
        return (loss / Double(n), Tensor(shape: [n, k], scalars: values), gradient)
    }
}

/// The state of one forward and backward pass: every node's output, the pre-BatchNorm maps and batch statistics,
/// dropout masks, then the gradients flowing back. Buffers are released as soon as the backward pass is past them.
private struct Pass {
    let model: TrainingGraph
    let nodes: [Node]
    let shapes: [Shape]
    /// The outputs the backward pass starts from; `last`, the latest of them in the graph's order.
    let targets: [Int]
    let last: Int
    let threads: Int
    let seed: UInt64
    var needed: [Bool]
    /// Convolutions computed by the residual node that reads them (see init).
    var fusedIntoResidual: [Bool]
    var outputs: [AlignedBuffer?]
    var preNormalization: [AlignedBuffer?]
    var statistics: [(mean: [Float], invStd: [Float], rows: Int)?]
    var masks: [AlignedBuffer?]
    var gradients: [AlignedBuffer?]
    let zeros: AlignedBuffer
    /// Whether to compute ∂L/∂input (tests; training never needs it), left in `inputGradient`.
    var keepInputGradient = false
    var inputGradient: [Float] = []

    init(graph model: TrainingGraph, shapes: [Shape], targets: [Int], threads: Int, seed: UInt64) {
        self.model = model
        nodes = model.graph.nodes
        (self.shapes, self.targets, self.last) = (shapes, targets, targets.max()!)
        (self.threads, self.seed) = (threads, seed)
        needed = [Bool](repeating: false, count: nodes.count)
        for t in targets { needed[t] = true }
        for i in stride(from: last, through: 0, by: -1) where needed[i] {
            for j in nodes[i].inputs { needed[j] = true }
        }
        // A residual block's last convolution runs at the residual node with the shortcut added in its epilogue, by
        // the rule inference follows (Fusion.swift; here only without BatchNorm): its own output is never stored.
        fusedIntoResidual = [Bool](repeating: false, count: nodes.count)
        let needed = needed
        for branch in model.graph.residualFusions(batchNormFolded: false, included: { needed[$0] }).keys {
            fusedIntoResidual[branch] = true
        }
        outputs = [AlignedBuffer?](repeating: nil, count: nodes.count)
        outputs[0] = model.pool.take(shapes[0].count)
        preNormalization = outputs.map { _ in nil }
        statistics = [(mean: [Float], invStd: [Float], rows: Int)?](repeating: nil, count: nodes.count)
        masks = outputs.map { _ in nil }
        gradients = outputs.map { _ in nil }
        zeros = AlignedBuffer(count: (nodes.map(\.channels).max() ?? 0) + 16, zeroed: true)
    }

    func map(_ i: Int) -> FeatureMap { view(outputs[i]!, shapes[i]) }

    func view(_ buffer: AlignedBuffer, _ s: Shape) -> FeatureMap {
        FeatureMap(base: buffer.pointer, n: s.n, h: s.h, w: s.w, c: s.c)
    }

    func value(_ name: String) -> [Float] { model.values[name]! }

    // MARK: forward

    mutating func forward() {
        for i in 1...last where needed[i] && !fusedIntoResidual[i] {
            let started = model.timer == nil ? 0 : DispatchTime.now().uptimeNanoseconds
            defer { model.timer?(i, false, Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9) }
            let node = nodes[i], s = shapes[i]
            let out = model.pool.take(s.count)
            let y = view(out, s)
            switch node.operation {
            case .input:
                preconditionFailure("only node 0 is an input")
            case let .convolution(g, p, activation):
                forwardConvolution(i, g, p, activation, into: out)
            case let .residual(scale, activation) where fusedIntoResidual[node.inputs[1]]:
                // y = activation(shortcut + scale · (conv(x) + bias)), the scale folded into the packed weights.
                let branch = nodes[node.inputs[1]]
                guard case let .convolution(g, p, _) = branch.operation else { preconditionFailure("fused branch") }
                var conv = PackedConvolution(geometry: g, weights: value(p.weight), bias: p.bias.map(value),
                                             scale: scale, activation: activation, threads: threads)
                conv.tile = TileTuning.gemmTile(Kernels.current)
                conv.run(input: map(branch.inputs[0]), output: y, residual: map(node.inputs[0]),
                         zeros: zeros.pointer, threads: threads)
            case let .linear(inFeatures, outFeatures, weight, bias):
                let w = value(weight)
                w.withUnsafeBufferPointer { w in
                    let x = MatrixView(rowMajor: outputs[node.inputs[0]]!.pointer, rows: s.n, columns: inFeatures)
                    let wt = MatrixView(rowMajor: w.baseAddress!, rows: outFeatures, columns: inFeatures).transposed
                    GEMM.multiply(x, wt, into: out.pointer, ldc: outFeatures, accumulate: false, threads: threads)
                }
                if let bias {
                    let b = value(bias)
                    for r in 0..<s.n { for o in 0..<outFeatures { out.pointer[r * outFeatures + o] += b[o] } }
                }
            case let .dropout(graphRate):
                forwardDropout(i, rate: model.dropoutRate ?? graphRate, into: out)
            case let .batchNorm(prefix, epsilon):
                statistics[i] = batchNorm(outputs[node.inputs[0]]!, into: out, rows: s.n * s.h * s.w, channels: s.c,
                                          prefix: prefix, epsilon: epsilon, relu: false)
            case .maxPool, .averagePool, .concat, .residual, .globalAveragePool, .l2Normalize:
                SharedOperation(node.operation)!.run(node.inputs.map(map), output: y, threads: threads)
            case .prelu, .softmax:
                preconditionFailure("\(node.name): MTCNN's PReLU and softmax run in inference only")
            }
            outputs[i] = out
        }
    }

    /// Convolution, then BatchNorm on the batch's statistics (keeping the convolution's output for the backward
    /// pass), then the activation.
    mutating func forwardConvolution(_ i: Int, _ g: ConvGeometry, _ p: ConvParameters, _ activation: Activation,
                                     into out: AlignedBuffer) {
        let s = shapes[i], input = map(nodes[i].inputs[0])
        var conv = PackedConvolution(geometry: g, weights: value(p.weight), bias: p.bias.map(value),
                                     activation: p.batchNorm == nil ? activation : .identity, threads: threads)
        conv.tile = TileTuning.gemmTile(Kernels.current)  // the training step's tile, measured once per process
        guard let bn = p.batchNorm else {
            conv.run(input: input, output: view(out, s), zeros: zeros.pointer, threads: threads)
            return
        }
        let z = model.pool.take(s.count)
        conv.run(input: input, output: view(z, s), zeros: zeros.pointer, threads: threads)
        statistics[i] = batchNorm(z, into: out, rows: s.n * s.h * s.w, channels: s.c, prefix: bn,
                                  epsilon: p.epsilon, relu: activation == .relu)
        preNormalization[i] = z
    }

    /// Inverted dropout: each value kept with probability 1 − rate and scaled by 1 / (1 − rate), the mask drawn
    /// from the step's seed and the node, and kept for the backward pass.
    mutating func forwardDropout(_ i: Int, rate: Float, into out: AlignedBuffer) {
        let count = shapes[i].count, x = outputs[nodes[i].inputs[0]]!.pointer
        guard rate > 0 else {
            out.pointer.update(from: x, count: count)
            return
        }
        let mask = model.pool.take(count)
        var rng = SplitMix64(seed &+ UInt64(i) &* 0x9E37_79B9_7F4A_7C15)
        let keep = 1 / (1 - rate)
        for e in 0..<count {
            mask.pointer[e] = rng.uniform(0, 1) >= rate ? keep : 0
            out.pointer[e] = x[e] * mask.pointer[e]
        }
        masks[i] = mask
    }

    /// Normalises with the batch's statistics, updates the running ones, returns (mean, 1/σ).
    func batchNorm(_ x: AlignedBuffer, into y: AlignedBuffer, rows: Int, channels: Int, prefix: String, epsilon: Float,
                   relu: Bool) -> (mean: [Float], invStd: [Float], rows: Int) {
        let (mean, variance, total) = BatchNormTraining.statistics(x.pointer, rows: rows, channels: channels,
                                                                   threads: threads, replicas: model.batchNormReplicas)
        let invStd = variance.map { Float(1 / ($0 + Double(epsilon)).squareRoot()) }
        let meanF = mean.map { Float($0) }
        BatchNormTraining.normalize(x.pointer, into: y.pointer, rows: rows, channels: channels, mean: meanF,
                                    invStd: invStd, gamma: value("\(prefix).weight"), beta: value("\(prefix).bias"),
                                    relu: relu, threads: threads)
        let m = Double(model.batchNormMomentum)
        let unbiased = total > 1 ? Double(total) / Double(total - 1) : 1
        model.values["\(prefix).running_mean"]!.withUnsafeMutableBufferPointer { r in
            for c in 0..<channels { r[c] = Float((1 - m) * Double(r[c]) + m * mean[c]) }
        }
        model.values["\(prefix).running_var"]!.withUnsafeMutableBufferPointer { r in
            for c in 0..<channels { r[c] = Float((1 - m) * Double(r[c]) + m * variance[c] * unbiased) }
        }
        return (meanF, invStd, total)
    }

    // MARK: backward

    /// Whether node j's gradient is wanted (not for the network's input, unless asked).
    func wantsGradient(_ j: Int) -> Bool { j != 0 || keepInputGradient }

    /// The gradient buffer of node `j` (zeroed on first use), or nil for the network's input.
    mutating func gradientMap(_ j: Int) -> FeatureMap? {
        guard wantsGradient(j) else { return nil }
        if gradients[j] == nil {
            gradients[j] = model.pool.take(shapes[j].count)
            gradients[j]!.pointer.update(repeating: 0, count: shapes[j].count)
        }
        return view(gradients[j]!, shapes[j])
    }

    /// Node j's gradient buffer for a caller that writes all of it: `fresh` when this is its first contribution, and
    /// then the buffer is not zeroed — the caller stores instead of adding (saving the zeroing and a read).
    mutating func gradientMapForWriting(_ j: Int) -> (map: FeatureMap, fresh: Bool)? {
        guard wantsGradient(j) else { return nil }
        let fresh = gradients[j] == nil
        if fresh { gradients[j] = model.pool.take(shapes[j].count) }
        return (view(gradients[j]!, shapes[j]), fresh)
    }

    mutating func backward(outputGradients: [[Float]]) {
        for (target, seed) in zip(targets, outputGradients) {
            let top = gradientMap(target)!
            seed.withUnsafeBufferPointer { top.base.update(from: $0.baseAddress!, count: $0.count) }
        }
        for i in stride(from: last, to: 0, by: -1) where needed[i] {
            guard let gradient = gradients[i] else { continue }
            let started = model.timer == nil ? 0 : DispatchTime.now().uptimeNanoseconds
            defer { model.timer?(i, true, Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9) }
            let node = nodes[i], s = shapes[i]
            let dy = view(gradient, s)
            switch node.operation {
            case .input:
                break
            case let .convolution(g, p, activation):
                backwardConvolution(i, g, p, activation, dy)
            case let .maxPool(kernel, stride, ceilMode):
                precondition(!ceilMode, "\(node.name): a ceil-mode max pool runs in inference only")
                if let dx = gradientMap(node.inputs[0]) {
                    let k = nodes[..<i].filter { if case .maxPool = $0.operation { true } else { false } }.count
                    PoolingGradient.maxPool(input: map(node.inputs[0]), outputGradient: dy, inputGradient: dx,
                                            kernel: kernel, stride: stride, routing: model.maxPoolRouting?[k],
                                            threads: threads)
                }
            case let .averagePool(kernel, stride, padding):
                if let dx = gradientMap(node.inputs[0]) {
                    PoolingGradient.averagePool(outputGradient: dy, inputGradient: dx, kernel: kernel, stride: stride,
                                                padding: padding, threads: threads)
                }
            case .concat:
                var offset = 0
                for j in node.inputs {
                    if let (dx, fresh) = gradientMapForWriting(j) {
                        add(dy.channels(offset, shapes[j].c), into: dx, scale: 1, overwrite: fresh)
                    }
                    offset += shapes[j].c
                }
            case let .residual(scale, activation):
                if activation == .relu { reluBackward(dy, node: i) }
                let (shortcut, branch) = (node.inputs[0], node.inputs[1])
                if let (dx, fresh) = gradientMapForWriting(branch) { add(dy, into: dx, scale: scale, overwrite: fresh) }
                if shortcut != branch && wantsGradient(shortcut) && gradients[shortcut] == nil {
                    // The shortcut's gradient is dY itself: hand the buffer over instead of copying it.
                    (gradients[shortcut], gradients[i]) = (gradients[i], nil)
                } else if let dx = gradientMap(shortcut) {
                    add(dy, into: dx, scale: 1)
                }
            case .globalAveragePool:
                if let dx = gradientMap(node.inputs[0]) {
                    PoolingGradient.globalAveragePool(outputGradient: dy, inputGradient: dx, threads: threads)
                }
            case let .linear(inFeatures, outFeatures, weight, bias):
                backwardLinear(i, inFeatures, outFeatures, weight, bias, dy)
            case .dropout:
                if let mask = masks[i] { for e in 0..<s.count { dy.base[e] *= mask.pointer[e] } }
                if let dx = gradientMap(node.inputs[0]) { add(dy, into: dx, scale: 1) }
            case let .batchNorm(prefix, _):
                batchNormBackward(i, prefix: prefix, x: outputs[node.inputs[0]]!.pointer, dy)
                if let dx = gradientMap(node.inputs[0]) { add(dy, into: dx, scale: 1) }
            case .prelu, .softmax:
                preconditionFailure("\(node.name): MTCNN's PReLU and softmax run in inference only")
            case .l2Normalize:
                if let dx = gradientMap(node.inputs[0]) {
                    L2NormalizeGradient.backward(input: map(node.inputs[0]), output: map(i), outputGradient: dy,
                                                 inputGradient: dx)
                }
            }
            // Everything at or after node i is done with: its output, its gradient and what its backward needed.
            release(i)
            model.nodeBackwardDone?(i)
        }
        if keepInputGradient {
            inputGradient = gradients[0].map { Array(UnsafeBufferPointer(start: $0.pointer, count: shapes[0].count)) }
                ?? [Float](repeating: 0, count: shapes[0].count)
        }
    }

    /// A convolution's backward: through its ReLU and BatchNorm (batch statistics), then the bias, weight and data
    /// gradients.
    mutating func backwardConvolution(_ i: Int, _ g: ConvGeometry, _ p: ConvParameters, _ activation: Activation,
                                      _ dy: FeatureMap) {
        let node = nodes[i], rows = dy.n * dy.h * dy.w
        if activation == .relu { reluBackward(dy, node: i) }
        if let bn = p.batchNorm { batchNormBackward(i, prefix: bn, x: preNormalization[i]!.pointer, dy) }
        if let bias = p.bias { model.addGradient(bias, columnSums(dy.base, rows: rows, columns: dy.c)) }
        let input = map(node.inputs[0]), threads = threads
        model.withGradient(p.weight) {
            ConvolutionGradient.weights(input: input, outputGradient: dy, geometry: g, into: $0, threads: threads)
        }
        if let (dx, fresh) = gradientMapForWriting(node.inputs[0]) {
            ConvolutionGradient.data(outputGradient: dy, weights: value(p.weight), geometry: g, inputGradient: dx,
                                     accumulate: !fresh, threads: threads)
        }
    }

    /// BatchNorm's backward in place on `dy` (its input `x`, the batch statistics of node i), γ's and β's gradients.
    func batchNormBackward(_ i: Int, prefix: String, x: UnsafeMutablePointer<Float>, _ dy: FeatureMap) {
        let stats = statistics[i]!
        let (dGamma, dBeta) = BatchNormTraining.backward(
            dy.base, x: x, into: dy.base, rows: dy.n * dy.h * dy.w, channels: dy.c, mean: stats.mean,
            invStd: stats.invStd, gamma: value("\(prefix).weight"), threads: threads, replicas: model.batchNormReplicas,
            totalRows: stats.rows)
        model.addGradient("\(prefix).weight", dGamma)
        model.addGradient("\(prefix).bias", dBeta)
    }

    /// A linear layer's backward: weight and bias gradients, then the data gradient.
    mutating func backwardLinear(_ i: Int, _ inFeatures: Int, _ outFeatures: Int, _ weight: String, _ bias: String?,
                                 _ dy: FeatureMap) {
        let n = shapes[i].n, threads = threads
        let x = MatrixView(rowMajor: outputs[nodes[i].inputs[0]]!.pointer, rows: n, columns: inFeatures)
        let d = MatrixView(rowMajor: dy.base, rows: n, columns: outFeatures)
        model.withGradient(weight) {
            GEMM.multiply(d.transposed, x, into: $0, ldc: inFeatures, accumulate: true, threads: threads)
        }
        if let bias { model.addGradient(bias, columnSums(dy.base, rows: n, columns: outFeatures)) }
        if let dx = gradientMap(nodes[i].inputs[0]) {
            value(weight).withUnsafeBufferPointer { w in
                GEMM.multiply(d, MatrixView(rowMajor: w.baseAddress!, rows: outFeatures, columns: inFeatures),
                              into: dx.base, ldc: inFeatures, accumulate: true, threads: threads)
            }
        }
    }

    /// Gives node i's buffers back to the pool.
    mutating func release(_ i: Int) {
        for buffer in [gradients[i], outputs[i], preNormalization[i], masks[i]] {
            if let buffer { model.pool.give(buffer) }
        }
        (gradients[i], outputs[i], preNormalization[i], masks[i]) = (nil, nil, nil, nil)
    }

    /// Gives back what the backward pass did not reach (the input, nodes the target does not depend on).
    mutating func releaseAll() { for i in nodes.indices { release(i) } }

    /// The ReLU's backward at node i: dY = 0 where its output is 0, or where `reluMasks` says so.
    func reluBackward(_ dy: FeatureMap, node i: Int) {
        guard let masks = model.reluMasks else {
            ReLU.mask(dy.base, output: outputs[i]!.pointer, count: dy.pixels * dy.c, threads: threads)
            return
        }
        guard let mask = masks[nodes[i].name], mask.count == dy.pixels * dy.c else {
            preconditionFailure("no ReLU mask of \(dy.pixels * dy.c) values for \(nodes[i].name)")
        }
        for b in 0..<dy.n { for c in 0..<dy.c { for y in 0..<dy.h { for x in 0..<dy.w {
            dy.pixel(b, y, x)[c] *= mask[((b * dy.c + c) * dy.h + y) * dy.w + x]
        } } } }
    }

    /// dst += scale · src (dst = scale · src when `overwrite`), pixel by pixel (either may be a channel slice).
    func add(_ src: FeatureMap, into dst: FeatureMap, scale: Float, overwrite: Bool = false) {
        Parallel.parallelFor(src.pixels, threads: threads, grain: 256) { p in
            let (a, b) = (src.base + p * src.pixelStride, dst.base + p * dst.pixelStride)
            if overwrite {
                for c in 0..<src.c { b[c] = scale * a[c] }
            } else {
                for c in 0..<src.c { b[c] += scale * a[c] }
            }
        }
    }

    func columnSums(_ x: UnsafeMutablePointer<Float>, rows: Int, columns: Int) -> [Float] {
        let xs = UncheckedSendable(x)
        return BatchNormTraining.channelSums(rows: rows, channels: columns, threads: threads) { row, sums in
            let p = xs.value + row * columns
            for c in 0..<columns { sums[c] += Double(p[c]) }
        }.map(Float.init)
    }
}

extension TrainingGraph {
    func addGradient(_ name: String, _ values: [Float]) {
        gradients[name]!.withUnsafeMutableBufferPointer { g in for i in values.indices { g[i] += values[i] } }
    }

    func withGradient(_ name: String, _ body: (UnsafeMutablePointer<Float>) -> Void) {
        gradients[name]!.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
    }
}

/// Feature-map buffers that outlive a step. A training step allocates the same few hundred maps in the same order
/// every time, many of them tens of megabytes. Handed back to the C allocator, blocks that large go back to the
/// kernel (glibc unmaps them, or trims its heap) and the next step faults their pages in again (docs/performance.md
/// has the counts). A request takes the smallest free buffer that holds it, with no bound on how much larger (a
/// bound cost more memory than it saved); buffers that no request took during a whole step (the shapes changed) are
/// released at its end.
final class MapPool {
    /// Free buffers by ascending capacity.
    private var free: [AlignedBuffer] = []
    /// The buffers handed out since the last `endStep`.
    private var taken = Set<ObjectIdentifier>()

    func take(_ count: Int) -> AlignedBuffer {
        let i = firstIndex(holding: count)
        let buffer = i < free.count ? free.remove(at: i) : AlignedBuffer(count: count)
        taken.insert(ObjectIdentifier(buffer))
        return buffer
    }

    func give(_ buffer: AlignedBuffer) { free.insert(buffer, at: firstIndex(holding: buffer.count)) }

    func endStep() {
        free.removeAll { !taken.contains(ObjectIdentifier($0)) }
        taken.removeAll(keepingCapacity: true)
    }

    func removeAll() { (free, taken) = ([], []) }

    /// The index of the first free buffer of at least `count` floats (binary search).
    private func firstIndex(holding count: Int) -> Int {
        var (lo, hi) = (0, free.count)
        while lo < hi {
            let mid = (lo + hi) / 2
            if free[mid].count < count { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
