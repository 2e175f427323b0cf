import Dispatch

/// A graph with its weights bound, fused and packed, ready to run on inputs of any size at or above its
/// minimum. Three parts, a file each: the compiler (Compiler.swift) lowers the graph to steps — every inference
/// BatchNorm folded into its convolution, residuals fused into their branch convolution by the rule training shares
/// (Fusion.swift), linear layers as 1×1 convolutions, dropout an alias, sibling 1×1 convolutions merged into one
/// GEMM, every convolution packed for its algorithm; the memory planner (MemoryPlan.swift) places every node's
/// values once per input shape; the executor (here) runs the steps in order, the operations that inference and
/// training share through `SharedOperation`. A loaded model is immutable and can be called from many threads at
/// once; each call borrows an arena of its own.
package final class CompiledGraph: Sendable {
    package let graph: Graph
    let steps: [Step]
    /// Zeros for the padding rows of convolutions; never written.
    let zeros: AlignedBuffer
    let plans = Locked<[PlanKey: Plan]>([:])
    /// Plans kept (with their arenas) at most: a network run at ever new sizes — MTCNN's image pyramid over photos
    /// of every size — forgets one, chosen arbitrarily, for each new one past this many.
    let keptPlans: Int
    /// The convolutions' arithmetic.
    package let precision: Precision
    /// Each fp32 convolution's register tile and where it came from, in graph order.
    package let tiles: [LayerTile]

    enum Step: Sendable {
        case input
        /// Produces nothing; reads as the node it names (dropout, a residual folded into a convolution).
        case alias(Int)
        /// Folded into another node.
        case dead
        case convolution(CompiledConvolution, input: Int, residual: Int?)
        /// Sibling 1×1 convolutions of one input merged into one GEMM, run at the first sibling's node; its output
        /// channels go to `outputs` (node indices, the first is this node) in order.
        case siblings(CompiledConvolution, input: Int, outputs: [Int])
        /// Written by the `.siblings` step at node `producer`.
        case sibling(producer: Int)
        /// Pools, concatenation, an unfused residual, L2 normalisation: as in training.
        case shared(SharedOperation, inputs: [Int])
        /// An inference BatchNorm that follows no convolution, as a per-channel scale and shift.
        case affine(scale: [Float], shift: [Float], input: Int)
        /// PReLU with its slopes.
        case prelu(slopes: [Float], input: Int)

        var inputs: [Int] {
            switch self {
            case .input, .alias, .dead, .sibling: return []
            case let .convolution(_, input, residual): return [input] + (residual.map { [$0] } ?? [])
            case let .siblings(_, input, _), let .affine(_, _, input), let .prelu(_, input): return [input]
            case let .shared(_, inputs): return inputs
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
    ///   - precision: the convolutions' arithmetic, checked against the CPU (fp32 runs `algorithms`; bf16 and int8
    ///     the implicit GEMM); int8 needs `int8Weights`.
    ///   - int8Weights: each convolution's quantised parameters by its weight's graph name; nil keeps a layer fp32.
    ///   - tiles: how each fp32 convolution's register tile is chosen (measured, kept or built in; never a change
    ///     to a result).
    ///   - keptPlans: how many input shapes keep their memory plan and arena between calls.
    package init(graph: Graph, algorithms: ConvolutionAlgorithms = .automatic, usualInputSize: Int = 299,
                mergeSiblings: Bool = true, precision route: PrecisionRoute = .fp32,
                tiles tuning: TileTuning = .builtIn, int8Weights: ((String) throws -> Int8Weights?)? = nil,
                keptPlans: Int = 32, parameter: (String) throws -> [Float]) throws {
        self.graph = graph
        self.keptPlans = max(1, keptPlans)
        self.precision = route.precision
        if route.precision == .int8 && int8Weights == nil { throw PrecisionError.needsQuantizedWeights }
        let (lowered, jobs) = try Self.lower(graph, parameter)
        var steps = lowered
        let units = mergeSiblings ? Self.mergedSiblings(jobs) : jobs.map { [$0] }
        let usualShapes = graph.inferShapes(n: 1, h: usualInputSize, w: usualInputSize)
        let packed = try Self.pack(units, algorithms: algorithms, usualShapes: usualShapes, route: route,
                                   int8Weights: int8Weights ?? { _ in nil }, parameter)
        for (unit, step) in zip(units, packed) {
            // Merged siblings run at the first of them, before anything reads any of them.
            let producer = unit.map(\.node).min()!
            steps[producer] = step
            for job in unit where job.node != producer { steps[job.node] = .sibling(producer: producer) }
        }
        let widest = graph.nodes.reduce(16) { max($0, $1.channels) }
        let zeros = AlignedBuffer(count: widest, zeroed: true)
        self.zeros = zeros
        tiles = usualShapes.map {
            Self.chooseTiles(&steps, usualShapes: $0, tuning: tuning, zeros: UnsafePointer(zeros.pointer))
        } ?? []
        self.steps = steps
    }

    /// How many convolutions run by Winograd's algorithm.
    package var winogradLayers: Int {
        steps.filter { if case .convolution(.winograd, _, _) = $0 { return true } else { return false } }.count
    }

    /// The output tile (mH × mW pixels) of each convolution that runs by Winograd, in graph order.
    package var winogradTiles: [(h: Int, w: Int)] {
        steps.compactMap {
            if case let .convolution(.winograd(w, _), _, _) = $0 { (w.vertical.m, w.horizontal.m) } else { nil }
        }
    }

    /// How many convolutions run inside a merged sibling GEMM.
    package var mergedConvolutions: Int {
        steps.reduce(0) { if case let .siblings(_, _, outputs) = $1 { return $0 + outputs.count } else { return $0 } }
    }

    /// How many residual additions were folded into a convolution's epilogue.
    package var fusedResiduals: Int {
        graph.nodes.indices.filter { i in
            if case .residual = graph.nodes[i].operation, case .convolution = steps[i] { return true }
            return false
        }.count
    }


    /// Runs the network on an NHWC input. The result is `[n, channels]` when the output map is 1×1, else NHWC.
    /// Runs to `output` (a node index; default the graph's primary output). `observe`, when given, receives each
    /// executed node's index and its wall time in seconds; `inspect` each node's values once they exist (int8
    /// calibration reads the convolutions' inputs so).
    package func run(_ input: Tensor, output: Int? = nil, threads: Int = Parallel.defaultThreads,
                    observe: ((Int, Double) -> Void)? = nil,
                    inspect: ((_ node: Int, _ values: FeatureMap) -> Void)? = nil) throws -> Tensor {
        let output = output ?? graph.output
        guard input.shape.count == 4 else { preconditionFailure("input must be NHWC, got \(input.shape)") }
        guard input.shape[3] == graph.inputChannels else {
            throw GraphError.wrongInputChannels(expected: graph.inputChannels, got: input.shape[3])
        }
        let plan = try self.plan(n: input.shape[0], h: input.shape[1], w: input.shape[2], output: output)
        let arena = try plan.borrowArena(
            "a forward pass of \(input.shape[0]) images at \(input.shape[1])×\(input.shape[2])")
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
            switch steps[i] {
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
                conv.run(input: map(input), outputs: outputs.map(map), residual: nil,
                         scratch: base + plan.scratchOffset, zeros: zeros.pointer, threads: threads)
            case let .convolution(conv, input, residual):
                conv.run(input: map(input), outputs: [map(i)], residual: residual.map(map),
                         scratch: base + plan.scratchOffset, zeros: zeros.pointer, threads: threads)
            case let .shared(operation, inputs):
                operation.run(inputs.map(map), output: map(i), threads: threads) { k in
                    plan.parent[inputs[k]].map { $0.node == i } ?? false
                }
            case let .affine(scale, shift, input):
                Elementwise.affine(input: map(input), output: map(i), scale: scale, shift: shift, threads: threads)
            case let .prelu(slopes, input):
                Elementwise.prelu(input: map(input), output: map(i), slopes: slopes, threads: threads)
            }
            if let inspect, plan.views[i] != nil { inspect(i, map(i)) }
        }
        let out = map(output)
        var result = Tensor(zeros: out.h == 1 && out.w == 1 ? [out.n, out.c] : [out.n, out.h, out.w, out.c])
        result.scalars.withUnsafeMutableBufferPointer { dest in
            let packed = FeatureMap(base: dest.baseAddress!, n: out.n, h: out.h, w: out.w, c: out.c)
            Pooling.copy(input: out, output: packed, threads: 1)
        }
        return result
    }

}
