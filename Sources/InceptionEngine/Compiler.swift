/// The compiler of `CompiledGraph`: from a graph and its parameters to steps. Convolutions are collected as
/// jobs while the graph is lowered, then packed all at once on every core (loading time is mostly packing).
extension CompiledGraph {
    /// A convolution to pack: at `node`, with its activation, its residual's scale and shortcut when one is fused.
    struct Job {
        let node: Int, g: ConvGeometry, p: ConvParameters, a: Activation, scale: Float, input: Int, residual: Int?
    }

    /// Every node's step but the convolutions', which are returned as jobs.
    static func lower(_ graph: Graph, _ parameter: (String) throws -> [Float]) throws -> ([Step], [Job]) {
        let nodes = graph.nodes
        var steps = [Step](repeating: .dead, count: nodes.count), jobs: [Job] = []
        var alias = Array(nodes.indices)
        func resolve(_ i: Int) -> Int { alias[i] == i ? i : resolve(alias[i]) }
        let residualOf = graph.residualFusions(batchNormFolded: true)
        let branchOf = Dictionary(uniqueKeysWithValues: residualOf.map { ($1, $0) })
        for (i, node) in nodes.enumerated() {
            let inputs = node.inputs.map(resolve)
            switch node.operation {
            case .input:
                steps[i] = .input
            case let .convolution(g, p, activation):
                if residualOf[i] != nil { continue }  // run by its residual node
                jobs.append(Job(node: i, g: g, p: p, a: activation, scale: 1, input: inputs[0], residual: nil))
            case let .residual(scale, activation):
                guard let branch = branchOf[i], case let .convolution(g, p, _) = nodes[branch].operation else {
                    steps[i] = .shared(SharedOperation(node.operation)!, inputs: inputs)
                    continue
                }
                jobs.append(Job(node: i, g: g, p: p, a: activation, scale: scale,
                                input: resolve(nodes[branch].inputs[0]), residual: inputs[0]))
            case let .linear(inFeatures, outFeatures, weight, bias):
                let g = ConvGeometry(inChannels: inFeatures, outChannels: outFeatures, kernel: (1, 1))
                let packed = PackedConvolution(geometry: g, weights: try parameter(weight),
                                               bias: try bias.map(parameter), activation: .identity)
                steps[i] = .convolution(.direct(packed), input: inputs[0], residual: nil)
            case .dropout:
                steps[i] = .alias(inputs[0])
                alias[i] = inputs[0]
            case let .batchNorm(prefix, epsilon):
                let (scale, shift) = try Self.batchNormAffine(prefix, epsilon, parameter)
                steps[i] = .affine(scale: scale, shift: shift, input: inputs[0])
            case let .prelu(weight):
                steps[i] = .prelu(slopes: try parameter(weight), input: inputs[0])
            case .maxPool, .averagePool, .concat, .globalAveragePool, .l2Normalize, .softmax:
                steps[i] = .shared(SharedOperation(node.operation)!, inputs: inputs)
            }
        }
        return (steps, jobs)
    }

    /// Sibling 1×1 convolutions (same input, same activation, no residual) grouped to become one GEMM: one pass over
    /// the input instead of several, wider panels of work to share between threads. Every member but the last must
    /// have a multiple of 16 channels (one panel writes to one member).
    static func mergedSiblings(_ jobs: [Job]) -> [[Job]] {
        func mergeable(_ job: Job) -> Bool {
            let g = job.g
            return job.residual == nil && job.scale == 1 && g.kernelH == 1 && g.kernelW == 1 && g.strideH == 1
                && g.strideW == 1 && g.padH == 0 && g.padW == 0
        }
        var groups: [String: [Job]] = [:], order: [String] = [], units: [[Job]] = []
        for job in jobs {
            guard mergeable(job) else { units.append([job]); continue }
            let key = "\(job.input) \(job.a) \(job.g.inChannels)"
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(job)
        }
        for key in order {
            let members = groups[key]!
            let aligned = members.filter { $0.g.outChannels % 16 == 0 }
            let ragged = members.filter { $0.g.outChannels % 16 != 0 }
            let group = aligned + ragged.prefix(1)
            if group.count > 1 { units.append(group) } else { units += group.map { [$0] } }
            units += ragged.dropFirst().map { [$0] }
        }
        return units
    }

    /// Each unit's step: one convolution by the algorithm `algorithms` picks for it at its usual output size, or
    /// merged siblings as one implicit GEMM. In parallel; the first error is thrown.
    static func pack(_ units: [[Job]], algorithms: ConvolutionAlgorithms, usualShapes: [Shape]?,
                     route: PrecisionRoute, int8Weights: Int8Lookup,
                     _ parameter: (String) throws -> [Float]) throws -> [Step] {
        // Each worker fills its own slots; a lock around the two arrays costs nothing next to packing.
        let packed = Locked((steps: [Step?](repeating: nil, count: units.count),
                             errors: [Error?](repeating: nil, count: units.count)))
        Parallel.parallelFor(units.count, threads: Parallel.defaultThreads) { u in
            do {
                let step = try Self.packUnit(units[u], algorithms: algorithms, usualShapes: usualShapes,
                                             route: route, int8Weights: int8Weights, parameter)
                packed.withLock { $0.steps[u] = step }
            } catch {
                packed.withLock { $0.errors[u] = error }
            }
        }
        let results = packed.withLock { $0 }
        if let error = results.errors.compactMap({ $0 }).first { throw error }
        return results.steps.map { $0! }
    }

    private static func packUnit(_ unit: [Job], algorithms: ConvolutionAlgorithms, usualShapes: [Shape]?,
                                 route: PrecisionRoute, int8Weights: Int8Lookup,
                                 _ parameter: (String) throws -> [Float]) throws -> Step {
        if unit.count == 1 {
            let job = unit[0]
            if let reduced = try Self.reduced(job.g, job.p, job.a, scale: job.scale, route, int8Weights, parameter) {
                return .convolution(.reduced(reduced), input: job.input, residual: job.residual)
            }
            let outputSize = usualShapes.map { ($0[job.node].h, $0[job.node].w) } ?? (0, 0)
            let side = max(outputSize.0, outputSize.1)
            let choice = algorithms.choice(job.g, side: side)
            let conv = try Self.pack(job.g, job.p, job.a, scale: job.scale, choice: choice, outputSize: outputSize,
                                     parameter)
            return .convolution(conv, input: job.input, residual: job.residual)
        }
        var g = unit[0].g
        g.outChannels = unit.reduce(0) { $0 + $1.g.outChannels }
        let merged = unit.map(\.node)
        if route.precision == .int8 {
            let conv = try Self.mergedInt8(unit, g, route.kernels, int8Weights, parameter)
            return .siblings(.reduced(conv), input: unit[0].input, outputs: merged)
        }
        var weights: [Float] = [], bias: [Float] = []
        for job in unit {
            let (w, b) = try Self.folded(job.g, job.p, parameter)
            weights += w
            bias += b ?? [Float](repeating: 0, count: job.g.outChannels)
        }
        if route.precision == .bf16 {
            let conv = ReducedConvolution(bf16: g, weights: weights, bias: bias, activation: unit[0].a,
                                          kernels: route.kernels)
            return .siblings(.reduced(conv), input: unit[0].input, outputs: merged)
        }
        return .siblings(.direct(PackedConvolution(geometry: g, weights: weights, bias: bias, activation: unit[0].a)),
                         input: unit[0].input, outputs: merged)
    }

    /// Per-channel (scale, shift) of an inference BatchNorm, computed in Double. A negative running variance (which
    /// no training produces) or a scale or shift beyond Float's range is refused, naming the parameter.
    package static func batchNormAffine(_ prefix: String, _ epsilon: Float, _ parameter: (String) throws -> [Float])
        throws -> (scale: [Float], shift: [Float])
    {
        let gamma = try parameter("\(prefix).weight"), beta = try parameter("\(prefix).bias")
        let mean = try parameter("\(prefix).running_mean"), variance = try parameter("\(prefix).running_var")
        var scale = [Float](), shift = [Float]()
        for c in gamma.indices {
            guard variance[c] >= 0 else {
                throw ParameterError.negativeVariance(parameter: "\(prefix).running_var", channel: c,
                                                      value: variance[c])
            }
            let s = Double(gamma[c]) / (Double(variance[c]) + Double(epsilon)).squareRoot()
            scale.append(Float(s))
            shift.append(Float(Double(beta[c]) - Double(mean[c]) * s))
            guard scale[c].isFinite && shift[c].isFinite else {
                throw ParameterError.overflowAfterFolding(parameter: "\(prefix).weight")
            }
        }
        return (scale, shift)
    }

    /// A convolution's weights (OIHW) and bias with its BatchNorm folded in: what inference runs (and ONNX export
    /// writes).
    package static func folded(_ g: ConvGeometry, _ p: ConvParameters, _ parameter: (String) throws -> [Float]) throws
        -> (weights: [Float], bias: [Float]?)
    {
        var weights = try parameter(p.weight)
        var bias = try p.bias.map(parameter)
        if let bn = p.batchNorm {
            let (s, shift) = try batchNormAffine(bn, p.epsilon, parameter)
            let perOutput = g.depth
            for o in 0..<g.outChannels {
                for j in 0..<perOutput { weights[o * perOutput + j] *= s[o] }
            }
            bias = (0..<g.outChannels).map { o in shift[o] + (bias?[o] ?? 0) * s[o] }
            guard weights.allSatisfy(\.isFinite) && bias!.allSatisfy(\.isFinite) else {
                throw ParameterError.overflowAfterFolding(parameter: p.weight)
            }
        }
        return (weights, bias)
    }

    static func pack(_ g: ConvGeometry, _ p: ConvParameters, _ activation: Activation, scale: Float,
                     choice: ConvolutionChoice, outputSize: (h: Int, w: Int),
                     _ parameter: (String) throws -> [Float]) throws -> CompiledConvolution {
        let (weights, bias) = try folded(g, p, parameter)
        if case let .winograd(tile) = choice,
           let w = WinogradConvolution(geometry: g, weights: weights, bias: bias, scale: scale, activation: activation,
                                       outputSize: outputSize, tile: tile) {
            return .winograd(w, tile: nil)
        }
        return .direct(PackedConvolution(geometry: g, weights: weights, bias: bias, scale: scale,
                                         activation: activation))
    }

    /// The quantised parameters of each convolution, by its weight's name (nil: the layer stays fp32).
    typealias Int8Lookup = (String) throws -> Int8Weights?

    /// The layer in reduced precision, or nil where it stays fp32 (everything at fp32; at int8 a layer the
    /// checkpoint has no integers for).
    static func reduced(_ g: ConvGeometry, _ p: ConvParameters, _ activation: Activation, scale: Float,
                        _ route: PrecisionRoute, _ int8Weights: Int8Lookup,
                        _ parameter: (String) throws -> [Float]) throws -> ReducedConvolution?
    {
        let kernels = route.kernels
        switch route.precision {
        case .fp32:
            return nil
        case .bf16:
            let (weights, bias) = try folded(g, p, parameter)
            return ReducedConvolution(bf16: g, weights: weights, bias: bias, scale: scale, activation: activation,
                                      kernels: kernels)
        case .int8:
            guard let q = try int8Weights(p.weight) else { return nil }
            let (channelScale, bias) = try int8Epilogue(g, p, parameter)
            return ReducedConvolution(int8: g, weights: q, channelScale: channelScale, bias: bias, scale: scale,
                                      activation: activation, kernels: kernels)
        }
    }

    /// An int8 layer's per-channel multiplier and shift: its BatchNorm folded (ones and the bias without one).
    static func int8Epilogue(_ g: ConvGeometry, _ p: ConvParameters, _ parameter: (String) throws -> [Float]) throws
        -> (channelScale: [Float], bias: [Float])
    {
        let bias = try p.bias.map(parameter) ?? [Float](repeating: 0, count: g.outChannels)
        guard let bn = p.batchNorm else { return ([Float](repeating: 1, count: g.outChannels), bias) }
        let (s, shift) = try batchNormAffine(bn, p.epsilon, parameter)
        return (s, (0..<g.outChannels).map { shift[$0] + bias[$0] * s[$0] })
    }

    /// Merged int8 siblings: one input, so one input scale; their integers, scales and shifts side by side.
    static func mergedInt8(_ unit: [Job], _ g: ConvGeometry, _ kernels: ReducedKernels, _ quantized: Int8Lookup,
                           _ parameter: (String) throws -> [Float]) throws -> ReducedConvolution {
        var merged: Int8Weights?, channelScale: [Float] = [], bias: [Float] = []
        for job in unit {
            guard let q = try quantized(job.p.weight) else {
                throw ParameterError.notQuantized(parameter: job.p.weight)
            }
            let (s, b) = try int8Epilogue(job.g, job.p, parameter)
            channelScale += s
            bias += b
            guard var m = merged else { merged = q; continue }
            guard m.inputScale == q.inputScale && m.inputZeroPoint == q.inputZeroPoint else {
                throw ParameterError.inputScalesDisagree(parameter: job.p.weight)
            }
            m.q += q.q
            m.weightScales += q.weightScales
            merged = m
        }
        return ReducedConvolution(int8: g, weights: merged!, channelScale: channelScale, bias: bias,
                                  activation: unit[0].a, kernels: kernels)
    }
}
