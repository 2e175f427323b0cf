import Dispatch


/// A graph with its weights bound, fused and packed, ready to run on inputs of any size at or above its
/// minimum. Compilation does, in order:
///  1. fold every inference BatchNorm into its convolution (weights and bias);
///  2. fold each residual `act(x + s·conv(y))` whose branch is a convolution used nowhere else into that
///     convolution's epilogue (s scales the packed weights, x is added as the tile is stored);
///  3. turn linear layers into 1×1 convolutions on 1×1 maps, and dropout into an alias of its input.
/// Per input shape it then plans memory once: every concatenation input that nothing else reads is written
/// straight into its channel slice of the concatenation, and the remaining buffers share one arena by
/// liveness. A loaded model is immutable and can be called from many threads at once; each call borrows an
/// arena of its own.
public final class CompiledGraph: Sendable {
    public let graph: Graph
    let kernels: [Kernel]
    /// Zeros for the padding rows of convolutions; never written.
    let zeros: AlignedBuffer
    private let plans = Locked<[PlanKey: Plan]>([:])

    enum Kernel: Sendable {
        case input
        /// Produces nothing; reads as the node it names (dropout, a residual folded into a convolution).
        case alias(Int)
        /// Folded into another node.
        case dead
        case convolution(ConvolutionKernel, input: Int, residual: Int?)
        /// Sibling 1×1 convolutions of one input merged into one GEMM, run at the first sibling's node; its output
        /// channels go to `outputs` (node indices, the first is this node) in order.
        case siblings(PackedConvolution, input: Int, outputs: [Int])
        /// Written by the `.siblings` kernel at node `producer`.
        case sibling(producer: Int)
        case maxPool(kernel: Int, stride: Int, input: Int)
        case averagePool(kernel: Int, stride: Int, padding: Int, input: Int)
        case concat([Int])
        case residual(scale: Float, activation: Activation, shortcut: Int, branch: Int)
        case globalAveragePool(input: Int)
        case affine(scale: [Float], shift: [Float], input: Int)
        case l2Normalize(input: Int)

        var inputs: [Int] {
            switch self {
            case .input, .alias, .dead, .sibling: return []
            case let .convolution(_, input, residual): return [input] + (residual.map { [$0] } ?? [])
            case let .siblings(_, input, _): return [input]
            case let .maxPool(_, _, input), let .averagePool(_, _, _, input), let .globalAveragePool(input),
                 let .affine(_, _, input), let .l2Normalize(input):
                return [input]
            case let .concat(inputs): return inputs
            case let .residual(_, _, shortcut, branch): return [shortcut, branch]
            }
        }
    }

    /// - Parameters:
    ///   - parameter: returns the named parameter's values in PyTorch layout (shapes as `graph.parameters` gives
    ///     them); the caller has verified them.
    ///   - algorithms: which convolution algorithms may be chosen, layer by layer.
    ///   - usualInputSize: the square input size the model usually runs at; the automatic choice of algorithm judges
    ///     each layer at that size (any size still runs).
    ///   - mergeSiblings: run 1×1 convolutions that read the same input as one GEMM (results are bitwise the same).
    public init(graph: Graph, algorithms: ConvolutionAlgorithms = .automatic, usualInputSize: Int = 299,
                mergeSiblings: Bool = true, parameter: (String) throws -> [Float]) throws {
        self.graph = graph
        let usualShapes = graph.inferShapes(n: 1, h: usualInputSize, w: usualInputSize)
        // Convolutions are packed after this pass, all at once on every core (loading time is mostly packing).
        typealias Job = (node: Int, g: ConvGeometry, p: ConvParameters, a: Activation, scale: Float, input: Int, residual: Int?)
        var jobs: [Job] = []
        let nodes = graph.nodes
        var kernels = [Kernel](repeating: .dead, count: nodes.count)
        func pack(_ g: ConvGeometry, _ p: ConvParameters, _ a: Activation, scale: Float, node: Int, input: Int,
                  residual: Int?) {
            jobs.append((node, g, p, a, scale, input, residual))
        }
        var alias = Array(nodes.indices)
        func resolve(_ i: Int) -> Int { alias[i] == i ? i : resolve(alias[i]) }

        var uses = [Int](repeating: 0, count: nodes.count)
        for node in nodes { for i in node.inputs { uses[i] += 1 } }
        // Residuals whose branch convolution can take them as its epilogue.
        var fusedInto = [Int: Int]()  // convolution index -> residual index
        for (i, node) in nodes.enumerated() {
            if case .residual = node.operation, case .convolution = nodes[node.inputs[1]].operation,
               uses[node.inputs[1]] == 1 {
                fusedInto[node.inputs[1]] = i
            }
        }

        for (i, node) in nodes.enumerated() {
            let inputs = node.inputs.map(resolve)
            switch node.operation {
            case .input:
                kernels[i] = .input
            case let .convolution(g, p, activation):
                if fusedInto[i] != nil { continue }  // built with its residual below
                pack(g, p, activation, scale: 1, node: i, input: inputs[0], residual: nil)
            case let .residual(scale, activation):
                if case let .convolution(g, p, branchActivation) = nodes[node.inputs[1]].operation,
                   fusedInto[node.inputs[1]] == i, branchActivation == .identity {
                    let branchInput = resolve(nodes[node.inputs[1]].inputs[0])
                    pack(g, p, activation, scale: scale, node: i, input: branchInput, residual: inputs[0])
                } else {
                    if fusedInto[node.inputs[1]] == i {  // a branch with its own activation cannot fuse
                        let conv = node.inputs[1]
                        guard case let .convolution(g, p, a) = nodes[conv].operation else { fatalError() }
                        pack(g, p, a, scale: 1, node: conv, input: resolve(nodes[conv].inputs[0]), residual: nil)
                    }
                    kernels[i] = .residual(scale: scale, activation: activation, shortcut: inputs[0], branch: inputs[1])
                }
            case let .maxPool(k, s):
                kernels[i] = .maxPool(kernel: k, stride: s, input: inputs[0])
            case let .averagePool(k, s, p):
                kernels[i] = .averagePool(kernel: k, stride: s, padding: p, input: inputs[0])
            case .concat:
                kernels[i] = .concat(inputs)
            case .globalAveragePool:
                kernels[i] = .globalAveragePool(input: inputs[0])
            case let .linear(inFeatures, outFeatures, weight, bias):
                let g = ConvGeometry(inChannels: inFeatures, outChannels: outFeatures, kernel: (1, 1))
                let packed = PackedConvolution(geometry: g, weights: try parameter(weight),
                                               bias: try bias.map(parameter), activation: .identity)
                kernels[i] = .convolution(.direct(packed), input: inputs[0], residual: nil)
            case .dropout:
                kernels[i] = .alias(inputs[0])
                alias[i] = inputs[0]
            case let .batchNorm(prefix, epsilon):
                let (scale, shift) = try Self.batchNormAffine(prefix, epsilon, parameter)
                kernels[i] = .affine(scale: scale, shift: shift, input: inputs[0])
            case .l2Normalize:
                kernels[i] = .l2Normalize(input: inputs[0])
            }
        }
        // Sibling 1×1 convolutions (same input, same activation, no residual) become one GEMM: one pass over the
        // input instead of several, wider panels of work to share between threads. Every member but the last
        // must have a multiple of 16 channels (one panel writes to one member).
        var units: [[Job]] = jobs.map { [$0] }
        if mergeSiblings {
            func mergeable(_ job: Job) -> Bool {
                let g = job.g
                return job.residual == nil && job.scale == 1 && g.kernelH == 1 && g.kernelW == 1 && g.strideH == 1
                    && g.strideW == 1 && g.padH == 0 && g.padW == 0
            }
            var groups: [String: [Job]] = [:], order: [String] = []
            units = []
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
        }
        // Each worker fills its own slots; a lock around the two arrays costs nothing next to packing.
        let packed = Locked((kernels: [Kernel?](repeating: nil, count: units.count),
                             errors: [Error?](repeating: nil, count: units.count)))
        Parallel.parallelFor(units.count, threads: Parallel.defaultThreads) { u in
            let unit = units[u]
            do {
                let kernel: Kernel
                if unit.count == 1 {
                    let job = unit[0]
                    let outputSize = usualShapes.map { ($0[job.node].h, $0[job.node].w) } ?? (0, 0)
                    let side = max(outputSize.0, outputSize.1)
                    kernel = .convolution(try Self.pack(job.g, job.p, job.a, scale: job.scale,
                                                        choice: algorithms.choice(job.g, side: side),
                                                        outputSize: outputSize, parameter),
                                          input: job.input, residual: job.residual)
                } else {
                    var weights: [Float] = [], bias: [Float] = []
                    for job in unit {
                        let (w, b) = try Self.folded(job.g, job.p, parameter)
                        weights += w
                        bias += b ?? [Float](repeating: 0, count: job.g.outChannels)
                    }
                    var g = unit[0].g
                    g.outChannels = unit.reduce(0) { $0 + $1.g.outChannels }
                    kernel = .siblings(PackedConvolution(geometry: g, weights: weights, bias: bias, activation: unit[0].a),
                                       input: unit[0].input, outputs: unit.map(\.node))
                }
                packed.withLock { $0.kernels[u] = kernel }
            } catch {
                packed.withLock { $0.errors[u] = error }
            }
        }
        let results = packed.withLock { $0 }
        if let error = results.errors.compactMap({ $0 }).first { throw error }
        for (unit, kernel) in zip(units, results.kernels) {
            // Merged siblings run at the first of them, before anything reads any of them.
            let producer = unit.map(\.node).min()!
            kernels[producer] = kernel!
            for job in unit where job.node != producer { kernels[job.node] = .sibling(producer: producer) }
        }
        self.kernels = kernels
        let widest = nodes.reduce(16) { max($0, $1.channels) }
        zeros = AlignedBuffer(count: widest, zeroed: true)
    }

    /// Per-channel (scale, shift) of an inference BatchNorm, computed in Double. A negative running variance (which
    /// no training produces) or a scale or shift beyond Float's range is refused, naming the parameter.
    static func batchNormAffine(_ prefix: String, _ epsilon: Float, _ parameter: (String) throws -> [Float])
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

    /// A convolution's weights (OIHW) and bias with its BatchNorm folded in.
    static func folded(_ g: ConvGeometry, _ p: ConvParameters, _ parameter: (String) throws -> [Float]) throws
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
                     _ parameter: (String) throws -> [Float]) throws -> ConvolutionKernel {
        let (weights, bias) = try folded(g, p, parameter)
        if case let .winograd(tile) = choice,
           let w = WinogradConvolution(geometry: g, weights: weights, bias: bias, scale: scale, activation: activation,
                                       outputSize: outputSize, tile: tile) {
            return .winograd(w)
        }
        return .direct(PackedConvolution(geometry: g, weights: weights, bias: bias, scale: scale, activation: activation))
    }

    /// How many convolutions run by Winograd's algorithm.
    public var winogradLayers: Int {
        kernels.filter { if case .convolution(.winograd, _, _) = $0 { return true } else { return false } }.count
    }

    /// The output tile (mH × mW pixels) of each convolution that runs by Winograd, in graph order.
    public var winogradTiles: [(h: Int, w: Int)] {
        kernels.compactMap { if case let .convolution(.winograd(w), _, _) = $0 { (w.vertical.m, w.horizontal.m) } else { nil } }
    }

    /// How many convolutions run inside a merged sibling GEMM.
    public var mergedConvolutions: Int {
        kernels.reduce(0) { if case let .siblings(_, _, outputs) = $1 { return $0 + outputs.count } else { return $0 } }
    }

    /// How many residual additions were folded into a convolution's epilogue.
    public var fusedResiduals: Int {
        graph.nodes.indices.filter { i in
            if case .residual = graph.nodes[i].operation, case .convolution = kernels[i] { return true }
            return false
        }.count
    }

    // MARK: Running

    /// Runs the network on an NHWC input. The result is `[n, channels]` when the output map is 1×1, else NHWC.
    /// Runs to `output` (a node index; default the graph's primary output). `observe`, when given, receives each
    /// executed node's index and its wall time in seconds.
    public func run(_ input: Tensor, output: Int? = nil, threads: Int = Parallel.defaultThreads,
                    observe: ((Int, Double) -> Void)? = nil) throws -> Tensor {
        let output = output ?? graph.output
        guard input.shape.count == 4 else { preconditionFailure("input must be NHWC, got \(input.shape)") }
        guard input.shape[3] == graph.inputChannels else {
            throw GraphError.wrongInputChannels(expected: graph.inputChannels, got: input.shape[3])
        }
        let plan = try self.plan(n: input.shape[0], h: input.shape[1], w: input.shape[2], output: output)
        let arena = plan.borrowArena()
        defer { plan.returnArena(arena) }
        let base = arena.pointer
        func map(_ i: Int) -> FeatureMap {
            let s = plan.shapes[i], v = plan.views[i]!
            return FeatureMap(base: base + v.offset, n: s.n, h: s.h, w: s.w, c: s.c, pixelStride: v.pixelStride)
        }
        let threads = max(1, threads)
        for i in 0...output {
            let start = observe == nil ? 0 : DispatchTime.now().uptimeNanoseconds
            defer {
                if let observe { observe(i, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9) }
            }
            switch kernels[i] {
            case .input:
                let m = map(i)
                input.scalars.withUnsafeBufferPointer { source in
                    let packed = FeatureMap(base: UnsafeMutablePointer(mutating: source.baseAddress!), n: m.n, h: m.h,
                                            w: m.w, c: m.c)
                    Pooling.copy(input: packed, output: m, threads: threads)
                }
            case .alias, .dead, .sibling:
                break
            case let .siblings(conv, input, outputs):
                conv.run(input: map(input), outputs: outputs.map(map), zeros: zeros.pointer, threads: threads)
            case let .convolution(conv, input, residual):
                conv.run(input: map(input), output: map(i), residual: residual.map(map),
                         scratch: base + plan.scratchOffset, zeros: zeros.pointer, threads: threads)
            case let .maxPool(k, s, input):
                Pooling.maxPool(input: map(input), output: map(i), kernel: k, stride: s, threads: threads)
            case let .averagePool(k, s, p, input):
                Pooling.averagePool(input: map(input), output: map(i), kernel: k, stride: s, padding: p, threads: threads)
            case let .concat(inputs):
                var offset = 0
                let out = map(i)
                for j in inputs {
                    let c = plan.shapes[j].c
                    if plan.parent[j] == nil || plan.parent[j]!.node != i {
                        Pooling.copy(input: map(j), output: out.channels(offset, c), threads: threads)
                    }
                    offset += c
                }
            case let .residual(scale, activation, shortcut, branch):
                Elementwise.residual(shortcut: map(shortcut), branch: map(branch), output: map(i), scale: scale,
                                     activation: activation, threads: threads)
            case let .globalAveragePool(input):
                Pooling.globalAveragePool(input: map(input), output: map(i), threads: threads)
            case let .affine(scale, shift, input):
                Elementwise.affine(input: map(input), output: map(i), scale: scale, shift: shift, threads: threads)
            case let .l2Normalize(input):
                Elementwise.l2Normalize(input: map(input), output: map(i), threads: threads)
            }
        }
        let out = map(output)
        var result = Tensor(zeros: out.h == 1 && out.w == 1 ? [out.n, out.c] : [out.n, out.h, out.w, out.c])
        result.scalars.withUnsafeMutableBufferPointer { dest in
            Pooling.copy(input: out, output: FeatureMap(base: dest.baseAddress!, n: out.n, h: out.h, w: out.w, c: out.c),
                         threads: 1)
        }
        return result
    }

    // MARK: Memory planning

    struct PlanKey: Hashable { let n: Int, h: Int, w: Int, output: Int }
    struct View: Sendable { let offset: Int, pixelStride: Int }

    final class Plan: Sendable {
        let shapes: [Shape]
        let views: [View?]
        /// For concatenation inputs written in place: the concatenation and the channel offset.
        let parent: [(node: Int, offset: Int)?]
        /// Activations, then the scratch space of the layer that needs the most (Winograd's transformed tiles).
        let arenaSize: Int
        let scratchOffset: Int
        private let arenas = Locked<[AlignedBuffer]>([])

        init(shapes: [Shape], views: [View?], parent: [(node: Int, offset: Int)?], arenaSize: Int, scratchOffset: Int) {
            (self.shapes, self.views, self.parent, self.arenaSize, self.scratchOffset) =
                (shapes, views, parent, arenaSize, scratchOffset)
        }

        func borrowArena() -> AlignedBuffer {
            arenas.withLock { $0.popLast() } ?? AlignedBuffer(count: arenaSize)
        }

        func returnArena(_ arena: AlignedBuffer) { arenas.withLock { $0.append(arena) } }
    }

    /// Activation memory of one call at this input size, in floats.
    public func arenaFloats(n: Int, h: Int, w: Int) throws -> Int {
        try plan(n: n, h: h, w: w, output: graph.output).arenaSize
    }

    func plan(n: Int, h: Int, w: Int, output: Int) throws -> Plan {
        let key = PlanKey(n: n, h: h, w: w, output: output)
        if let plan = plans.withLock({ $0[key] }) { return plan }
        let plan = try makePlan(n: n, h: h, w: w, output: output)
        plans.withLock { $0[key] = plan }
        return plan
    }

    private func makePlan(n: Int, h: Int, w: Int, output: Int) throws -> Plan {
        let shapes = try graph.shapes(n: n, h: h, w: w)
        // Nodes after the requested output are not run, except siblings that a merged GEMM at or before it writes.
        var count = output + 1
        for i in 0...output { if case let .siblings(_, _, outputs) = kernels[i] { count = max(count, outputs.max()! + 1) } }
        func live(_ i: Int) -> Bool {
            switch kernels[i] {
            case .alias, .dead: return false
            case let .sibling(producer): return producer <= output
            default: return i <= output
            }
        }
        /// Where node i's values are written.
        func written(_ i: Int) -> Int { if case let .sibling(producer) = kernels[i] { return producer } else { return i } }
        var consumers = [[Int]](repeating: [], count: count)
        for i in 0..<count where live(i) { for j in kernels[i].inputs { consumers[j].append(i) } }
        var output = output
        while case let .alias(k) = kernels[output] { output = k }

        // Concatenation inputs that only the concatenation reads are written into its slices.
        var parent = [(node: Int, offset: Int)?](repeating: nil, count: count)
        for i in (0..<count).reversed() {
            guard case let .concat(inputs) = kernels[i] else { continue }
            var offset = 0
            for j in inputs {
                if consumers[j] == [i], parent[j] == nil, j != 0, j != output { parent[j] = (i, offset) }
                offset += shapes[j].c
            }
        }
        func root(_ i: Int) -> (node: Int, offset: Int) {
            guard let p = parent[i] else { return (i, 0) }
            let r = root(p.node)
            return (r.node, r.offset + p.offset)
        }

        // Lifetime of each root buffer: from the first node written into it to the last node reading it.
        var first = [Int: Int](), last = [Int: Int]()
        for i in 0..<count where live(i) {
            let r = root(i).node
            first[r] = min(first[r] ?? written(i), written(i))
            let end = i == output ? Int.max : (consumers[i].max() ?? written(i))
            last[r] = max(last[r] ?? end, end)
        }
        // Greedy best-fit assignment of arena blocks in order of first use.
        var offsets = [Int: Int](), free: [(offset: Int, size: Int)] = [], active: [Int] = [], arenaSize = 0
        for r in first.keys.sorted(by: { first[$0]! < first[$1]! }) {
            let start = first[r]!
            active.removeAll { a in
                if last[a]! < start { free.append((offsets[a]!, (shapes[a].count + 15) / 16 * 16)); return true }
                return false
            }
            let size = (shapes[r].count + 15) / 16 * 16
            if let k = free.indices.filter({ free[$0].size >= size }).min(by: { free[$0].size < free[$1].size }) {
                offsets[r] = free[k].offset
                if free[k].size > size { free[k] = (free[k].offset + size, free[k].size - size) } else { free.remove(at: k) }
            } else {
                offsets[r] = arenaSize
                arenaSize += size
            }
            active.append(r)
        }
        var views = [View?](repeating: nil, count: count)
        for i in 0..<count {
            var j = i
            while case let .alias(k) = kernels[j] { j = k }
            guard live(j) else { continue }
            let r = root(j)
            views[i] = View(offset: offsets[r.node]! + r.offset, pixelStride: shapes[r.node].c)
        }
        var scratch = 0
        for i in 0..<count {
            if case let .convolution(conv, input, _) = kernels[i] {
                let x = shapes[input]
                scratch = max(scratch, conv.scratchFloats(n: x.n, h: x.h, w: x.w))
            }
        }
        return Plan(shapes: shapes, views: views, parent: parent, arenaSize: arenaSize + scratch, scratchOffset: arenaSize)
    }
}

/// Which convolution algorithm each layer may use.
public enum ConvolutionAlgorithms: Sendable, Hashable {
    /// Winograd where `inception bench --kernels` measured it faster on this project's machine (2-core Zen 3; the
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
    /// Per layer as measured on this CPU class and instruction-set level (`inception bench --kernels --save`),
    /// Winograd's tile included; layers the table does not list follow `.automatic`. A table, not a timing at every
    /// start: the algorithms round differently, and results must not change from one run to the next.
    case measured(AlgorithmTable)

    /// How a layer of geometry `g`, with output side `side` at the usual input size, runs.
    public func choice(_ g: ConvGeometry, side: Int) -> ConvolutionChoice {
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
public enum ConvolutionChoice: Sendable, Hashable, Codable, CustomStringConvertible {
    case direct
    case winograd(tile: Int?)

    public var description: String {
        switch self {
        case .direct: return "direct"
        case .winograd(nil): return "winograd"
        case let .winograd(m?): return "winograd F(\(m),3)"
        }
    }

    public init?(_ text: String) {
        switch text {
        case "direct": self = .direct
        case "winograd": self = .winograd(tile: nil)
        case "winograd F(2,3)": self = .winograd(tile: 2)
        case "winograd F(4,3)": self = .winograd(tile: 4)
        case "winograd F(6,3)": self = .winograd(tile: 6)
        default: return nil
        }
    }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let choice = Self(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "'\(text)' is not a convolution choice"))
        }
        self = choice
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// How each convolution layer runs, measured on one CPU class at one instruction-set level.
public struct AlgorithmTable: Sendable, Hashable, Codable {
    /// The CPU's model name and the kernels' level the times were measured with.
    public var cpu: String, isa: String
    /// Per layer (`key(_:side:)`): the fastest of the implicit GEMM and Winograd at each tile the layer allows.
    public var choices: [String: ConvolutionChoice]

    public init(cpu: String, isa: String, choices: [String: ConvolutionChoice] = [:]) {
        (self.cpu, self.isa, self.choices) = (cpu, isa, choices)
    }

    /// A layer: its geometry and its usual output side.
    public static func key(_ g: ConvGeometry, side: Int) -> String {
        "\(g.inChannels)->\(g.outChannels) k\(g.kernelH)x\(g.kernelW) s\(g.strideH) p\(g.padH),\(g.padW) side \(side)"
    }
}

/// A convolution ready to run, by either algorithm.
public enum ConvolutionKernel: Sendable {
    case direct(PackedConvolution)
    case winograd(WinogradConvolution)

    func scratchFloats(n: Int, h: Int, w: Int) -> Int {
        guard case let .winograd(conv) = self else { return 0 }
        return conv.scratchFloats(n: n, h: h, w: w)
    }

    func run(input: FeatureMap, output: FeatureMap, residual: FeatureMap?, scratch: UnsafeMutablePointer<Float>,
             zeros: UnsafePointer<Float>, threads: Int) {
        switch self {
        case let .direct(conv): conv.run(input: input, output: output, residual: residual, zeros: zeros, threads: threads)
        case let .winograd(conv):
            conv.run(input: input, output: output, residual: residual, scratch: scratch, threads: threads)
        }
    }
}
