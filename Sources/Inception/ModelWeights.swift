import Foundation
import InceptionEngine
import InceptionHub
import InceptionIO

/// A network's graph with its parameter values as the checkpoint holds them, not yet folded or packed: what
/// ``InceptionModel`` compiles, and what an ONNX export writes.
public struct ModelWeights {
    public let name: ModelName
    package let graph: Graph
    public let metadata: CheckpointMetadata
    private let read: (String) throws -> [Float]
    /// A quantised checkpoint's int8 convolutions, by graph name (nil for a layer it keeps in fp32); nil for an
    /// fp32 checkpoint.
    package let int8: (@Sendable (String) throws -> Int8Weights?)?

    /// A parameter by its graph name (not its checkpoint key), refused if it holds NaN or infinities.
    public func parameter(_ graphName: String) throws -> [Float] { try read(graphName) }

    /// The square input size the weights are for: the checkpoint's own when it says, else the network's default.
    public var inputSize: Int { metadata.inputSize ?? name.spec.inputSize }

    /// A checkpoint in the released layout (timm's key names, PyTorch shapes), checked strictly both ways: every
    /// parameter must be present with the right shape, and every tensor in the file must be used (only
    /// BatchNorm's `num_batches_tracked` counters are ignored). The classifier's size comes from the file, and a
    /// reduced depth, class names and input size from its metadata (``CheckpointMetadata``) when it has them.
    /// Tensors are read when asked for.
    ///
    /// A checkpoint `inception quantize` wrote (``QuantizedCheckpoint``) is recognised by its metadata: it loads
    /// with its int8 layers, and as the dequantised fp32 weights otherwise.
    public init(_ name: ModelName, file url: URL) throws {
        try self.init(name, tensors: try openTensorFile(url))
    }

    /// A checkpoint already open (see ``init(_:file:)``).
    public init(_ name: ModelName, tensors opened: any TensorFile) throws {
        // Only safetensors carries metadata, so only a safetensors file can say it is quantised.
        var quantized: QuantizedCheckpoint?
        if let safetensors = opened as? SafeTensorsFile, QuantizedCheckpoint.isQuantized(safetensors) {
            quantized = try QuantizedCheckpoint(safetensors)
        }
        let file = name.inReleasedLayout(quantized ?? opened)
        let classes = file.shapes[name.checkpointKey(name.spec.classifierWeight)]?.first
        let metadata = try CheckpointMetadata(file.metadata)
        let graph = name.graph(classes: classes, repeats: metadata.repeats)
        try InceptionModel.verify(graph, name, file)
        if let names = metadata.classNames, names.count != classes {
            throw WeightsError.badMetadata(key: "classes", reason: "it names \(names.count) classes, the classifier "
                                           + "has \(classes.map(String.init) ?? "none")")
        }
        (self.name, self.graph, self.metadata) = (name, graph, metadata)
        read = { try InceptionModel.finiteFloats(file, name.checkpointKey($0)) }
        if let quantized {
            int8 = { @Sendable graphName in try quantized.int8(name.checkpointKey(graphName)) }
        } else {
            int8 = nil
        }
    }

    /// Random weights with realistic statistics (BatchNorm γ in [0.2, 0.4], variances in [0.5, 1.5]), from a seed.
    public init(_ name: ModelName, randomSeed seed: UInt64, classes: Int? = nil) {
        let graph = name.graph(classes: classes)
        var weights: [String: [Float]] = [:]
        var rng = SplitMix64(seed)
        for spec in graph.parameters {
            let n = spec.count
            let fanIn = spec.shape.count > 1 ? spec.shape.dropFirst().reduce(1, *) : 1
            let values: [Float]
            switch spec.role {
            case .runningVariance: values = (0..<n).map { _ in rng.uniform(0.5, 1.5) }
            case .normScale: values = (0..<n).map { _ in rng.uniform(0.2, 0.4) }
            case .bias, .normShift, .runningMean: values = (0..<n).map { _ in rng.uniform(-0.1, 0.1) }
            case .slope: values = (0..<n).map { _ in rng.uniform(0, 0.5) }
            case .weight:
                let bound = (3 / Float(fanIn)).squareRoot()
                values = (0..<n).map { _ in rng.uniform(-bound, bound) }
            }
            weights[spec.name] = values
        }
        (self.name, self.graph, self.metadata, int8) = (name, graph, CheckpointMetadata(), nil)
        // Every name asked for comes from the graph itself, so the lookup cannot fail.
        read = { weights[$0]! }
    }

    /// The weights `source` names.
    public init(_ name: ModelName, from source: WeightsSource) throws {
        switch source {
        case let .file(url): try self.init(name, file: url)
        case let .released(hub):
            guard let repo = name.spec.hubRepository else { throw HubError.noReleasedWeights(model: name.rawValue) }
            try self.init(name, file: try hub.file(repo: repo, filename: "model.safetensors"))
        case let .random(seed): self.init(name, randomSeed: seed)
        }
    }

    /// `body`'s result, with a value the engine cannot use (`ParameterError`, named by its graph parameter)
    /// reported as a ``WeightsError`` naming the checkpoint's key.
    public func namingCheckpointKeys<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as ParameterError {
            throw WeightsError.unusable(key: name.checkpointKey(error.parameter), reason: error)
        }
    }
}
