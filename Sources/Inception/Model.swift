import Foundation
import InceptionEngine
import InceptionIO

/// A network with its weights loaded, folded and packed. Immutable and `Sendable`: one loaded model can serve
/// concurrent calls from any number of tasks or threads.
public final class InceptionModel: Sendable {
    public let name: ModelName
    package let compiled: CompiledGraph
    package var graph: Graph { compiled.graph }
    /// How many classes the logits score; nil for a model without a classifier (the face model loaded from a
    /// checkpoint without its `logits` layer).
    public var classes: Int? { width(of: .logits) }
    /// The logits' class names, when the checkpoint carries them (a run of `inception train` writes them); else
    /// ImageNet's for a 1000- or 1001-way classifier (see `label(_:)`).
    public let classNames: [String]?
    /// The square input size images are preprocessed to: the checkpoint's own when it says (a network trained at
    /// 139 classifies at 139), else the network's default.
    public let inputSize: Int
    /// The unfolded parameters of the layers after the earliest explainable one (see ``ExplainableLayers``).
    let explanationParameters: [String: [Float]]
    /// The explainable layers' gradient tails, made on first use, by layer and output node.
    let explanationTails = Locked<[String: GradientTail]>([:])

    init(name: ModelName, compiled: CompiledGraph, metadata: CheckpointMetadata = CheckpointMetadata(),
         explanationParameters: [String: [Float]] = [:]) {
        self.name = name
        self.compiled = compiled
        self.explanationParameters = explanationParameters
        self.inputSize = metadata.inputSize ?? name.spec.inputSize
        let classes = compiled.graph.outputs[.logits].map { compiled.graph.nodes[$0].channels }
        self.classNames = metadata.classNames.flatMap { $0.count == classes ? $0 : nil }
    }

    /// Compiles `weights`: BatchNorm folded, convolutions packed for this CPU's kernels, in `precision` (bf16 from
    /// any checkpoint, converted here; int8 from a quantised one, ``QuantizedCheckpoint``). A precision this CPU
    /// cannot run, or int8 from an fp32 checkpoint, is a `PrecisionError`.
    /// `tiles`: how each convolution's register tile is chosen (by default measured on this CPU once and kept;
    /// results are the same bits whichever runs).
    /// `explainable`: which layers ``explain(_:targets:method:layer:threads:)`` can explain (the last block by
    /// default, which keeps only the classifier's parameters a second time).
    public convenience init(_ weights: ModelWeights, algorithms: ConvolutionAlgorithms = .forThisCPU,
                            precision: Precision = .fp32, tiles: TileTuning = .forThisCPU,
                            explainable: ExplainableLayers = .lastBlock) throws {
        try self.init(weights, algorithms: algorithms, route: try PrecisionRoute(precision), tiles: tiles,
                      explainable: explainable)
    }

    /// `init(_:algorithms:precision:tiles:explainable:)` with the precision already checked (`PrecisionRoute`).
    public convenience init(_ weights: ModelWeights, algorithms: ConvolutionAlgorithms = .forThisCPU,
                            route: PrecisionRoute, tiles: TileTuning = .forThisCPU,
                            explainable: ExplainableLayers = .lastBlock) throws {
        if route.precision == .int8 && weights.int8 == nil { throw PrecisionError.needsQuantizedWeights }
        let compiled = try weights.namingCheckpointKeys {
            try CompiledGraph(graph: weights.graph, algorithms: algorithms,
                              usualInputSize: weights.name.spec.inputSize, precision: route,
                              tiles: route.precision == .fp32 ? tiles : .builtIn, int8Weights: weights.int8,
                              parameter: weights.parameter)
        }
        let kept = try weights.namingCheckpointKeys {
            try Self.explanationParameters(weights, explainable)
        }
        self.init(name: weights.name, compiled: compiled, metadata: weights.metadata, explanationParameters: kept)
    }

    /// Loads a checkpoint in the released layout, strictly (see ``ModelWeights/init(_:file:)``). Each tensor is
    /// read once, and checked for NaN and infinities as it is read.
    public convenience init(_ name: ModelName, weights url: URL, algorithms: ConvolutionAlgorithms = .forThisCPU,
                            precision: Precision = .fp32, tiles: TileTuning = .forThisCPU) throws {
        try self.init(try ModelWeights(name, file: url), algorithms: algorithms, precision: precision, tiles: tiles)
    }

    /// Random weights with realistic statistics, for benchmarks and tests of everything but the values.
    public convenience init(_ name: ModelName, randomSeed seed: UInt64, classes: Int? = nil,
                            algorithms: ConvolutionAlgorithms = .forThisCPU, tiles: TileTuning = .forThisCPU) {
        // Random weights hold no negative variance and nothing that overflows once folded.
        try! self.init(ModelWeights(name, randomSeed: seed, classes: classes), algorithms: algorithms, tiles: tiles)
    }

    /// A tensor of a checkpoint, refused if it holds NaN or infinities.
    package static func finiteFloats(_ file: any TensorFile, _ key: String) throws -> [Float] {
        let values = try file.floats(key)
        if values.contains(where: { !$0.isFinite }) { throw WeightsError.nonFinite(key: key) }
        return values
    }

    /// Checks that `file` holds exactly `graph`'s parameters under `name`'s checkpoint keys, each with its shape (a
    /// file of another of the networks is named as such); throws ``WeightsError`` otherwise.
    package static func verify(_ graph: Graph, _ name: ModelName, _ file: any TensorFile) throws {
        let shapes = file.shapes
        var unused = Set(shapes.keys.filter { !$0.hasSuffix("num_batches_tracked") })
        var missing: [String] = [], mismatch: WeightsError? = nil
        for spec in graph.parameters {
            let key = name.checkpointKey(spec.name)
            guard let shape = shapes[key] else {
                missing.append("\(key) \(spec.shape)")
                continue
            }
            unused.remove(key)
            if shape != spec.shape && mismatch == nil {
                mismatch = .shapeMismatch(key: key, expected: spec.shape, found: shape, model: name.rawValue)
            }
        }
        // Most keys missing: say whose weights these are, if another network's parameters are all there.
        if missing.count > graph.parameters.count / 2,
           let other = ModelName.allCases.first(where: { $0 != name && $0.fits(shapes) }) {
            throw WeightsError.otherModel(model: name.rawValue, weightsFor: other.rawValue)
        }
        if let mismatch { throw mismatch }
        if !missing.isEmpty { throw WeightsError.missingTensors(missing, model: name.rawValue) }
        if !unused.isEmpty { throw WeightsError.unexpectedTensors(unused.sorted(), model: name.rawValue) }
    }

    /// Names of the outputs this model can give: `logits`, `features` (pooled, before the classifier),
    /// `embedding` (face model), `aux_logits` (a training graph's auxiliary head).
    public var outputNames: [OutputName] { graph.outputs.keys.sorted() }

    /// The output a call without a name returns: `logits`, or the face model's `embedding`.
    public var primaryOutput: OutputName { graph.outputs.first { $0.value == graph.output }?.key ?? "output" }

    /// Values per image of the named output (nil: the model has no such output).
    public func width(of output: OutputName) -> Int? { graph.outputs[output].map { graph.nodes[$0].channels } }

    /// The output `embed` returns: the face model's embedding, else the pooled features before the classifier.
    public var embeddingOutput: OutputName { graph.outputs[.embedding] != nil ? .embedding : .features }

    /// The primary output — logits, or the L2-normalised embedding of the face model — or the named `output`,
    /// for an NCHW batch `[n, 3, h, w]` (the layout of PyTorch and ONNX). An input holding NaN or infinities is
    /// refused unless `allowNonFinite`, and so is an output that overflowed.
    public func callAsFunction(nchw input: Tensor, output: OutputName? = nil, threads: Int = Parallel.defaultThreads,
                               allowNonFinite: Bool = false) throws -> Tensor {
        guard input.shape.count == 4 else { throw InputError.wrongRank(input.shape) }
        if !allowNonFinite, let problem = InputError.nonFinite(in: input.scalars) { throw problem }
        guard input.shape[1] == graph.inputChannels else {
            throw InputError.wrongChannels(expected: graph.inputChannels, shape: input.shape)
        }
        var node: Int? = nil
        if let output {
            guard let index = graph.outputs[output] else {
                throw InputError.unknownOutput(output, model: name.rawValue, available: outputNames)
            }
            node = index
        }
        let result = try compiled.run(input.nchwToNHWC(), output: node, threads: threads)
        return allowNonFinite ? result : try finite(result, output: output ?? primaryOutput)
    }

    /// Throws `MemoryError` when a forward pass of `batch` images at `size` × `size` cannot fit in the memory left:
    /// its activations (the memory plan's arena) and its input, in both layouts.
    public func checkMemory(batch: Int, size: Int) throws { try checkMemory(batch: batch, height: size, width: size) }

    /// `checkMemory` for images of `height` × `width`.
    public func checkMemory(batch: Int, height: Int, width: Int) throws {
        let floats = try compiled.arenaFloats(n: batch, h: height, w: width) + 2 * batch * 3 * height * width
        try MemoryLimit.check(4 * floats, for: "a forward pass of \(batch) images at \(height)×\(width)")
    }

    /// `tensor`, or an error when the network's output overflowed (weights far out of range).
    func finite(_ tensor: Tensor, output: OutputName) throws -> Tensor {
        guard tensor.scalars.allSatisfy(\.isFinite) else { throw OutputError.nonFinite(output: output) }
        return tensor
    }
}

public enum OutputError: Error, Equatable, CustomStringConvertible {
    case nonFinite(output: OutputName)

    public var description: String {
        switch self {
        case let .nonFinite(output):
            return "the network's \(output) hold NaN or infinite values: its weights are out of range for this input"
        }
    }
}

public enum WeightsError: Error, Equatable, CustomStringConvertible {
    case shapeMismatch(key: String, expected: [Int], found: [Int], model: String)
    case missingTensors([String], model: String)
    case unexpectedTensors([String], model: String)
    case nonFinite(key: String)
    /// A value the network cannot use: a negative BatchNorm variance, or weights that overflow once folded.
    case unusable(key: String, reason: ParameterError)
    case otherModel(model: String, weightsFor: String)
    /// A `__metadata__` entry this library reads that cannot be used.
    case badMetadata(key: String, reason: String)

    public var description: String {
        func list(_ keys: [String]) -> String {
            keys.prefix(5).joined(separator: ", ") + (keys.count > 5 ? " and \(keys.count - 5) more" : "")
        }
        switch self {
        case let .shapeMismatch(key, expected, found, model):
            return "weights do not fit \(model): tensor '\(key)' has shape \(found), the model needs \(expected)"
        case let .missingTensors(keys, model):
            return "weights do not fit \(model): \(keys.count) tensor(s) missing: \(list(keys))"
        case let .unexpectedTensors(keys, model):
            return "weights do not fit \(model): \(keys.count) tensor(s) the model does not use: \(list(keys))"
        case let .nonFinite(key): return "weights are corrupt: tensor '\(key)' contains NaN or infinite values"
        case let .unusable(key, reason):
            switch reason {
            case let .negativeVariance(_, channel, value):
                return "weights are corrupt: tensor '\(key)' is a BatchNorm variance but holds \(value) "
                    + "at channel \(channel)"
            case .overflowAfterFolding:
                return "weights are out of range: tensor '\(key)' overflows Float once its BatchNorm is folded in"
            case .notQuantized, .inputScalesDisagree:
                return "weights do not fit together: tensor '\(key)': \(reason)"
            }
        case let .otherModel(model, other): return "these are \(other) weights, not \(model)"
        case let .badMetadata(key, reason): return "weights' metadata entry '\(key)' is unusable: \(reason)"
        }
    }
}

public enum InputError: Error, Equatable, CustomStringConvertible {
    case wrongRank([Int])
    case wrongChannels(expected: Int, shape: [Int])
    case unknownOutput(OutputName, model: String, available: [OutputName])
    case nonFinite(count: Int, first: Int)

    public var description: String {
        switch self {
        case let .nonFinite(count, first):
            return "the input holds \(count) NaN or infinite values (the first at flat index \(first))"
        case let .wrongRank(shape): return "input must have shape (N, 3, H, W), got \(quotedShape(shape))"
        case let .wrongChannels(expected, shape):
            return "input must have \(expected) channels in (N, C, H, W), got shape \(quotedShape(shape))"
        case let .unknownOutput(output, model, available):
            return "\(model) has no output '\(output)' with these weights; it has "
                + available.map(\.rawValue).joined(separator: ", ")
        }
    }
}

extension InputError {
    /// `.nonFinite` naming how many of `values` are NaN or infinite and the first, or nil when all are finite.
    public static func nonFinite(in values: [Float]) -> InputError? {
        guard let first = values.firstIndex(where: { !$0.isFinite }) else { return nil }
        return .nonFinite(count: values.lazy.filter { !$0.isFinite }.count, first: first)
    }
}
