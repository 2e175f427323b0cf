import Foundation
import InceptionEngine
import InceptionIO

/// Which layers a loaded model can explain: each explained layer needs the unfolded parameters of every layer after
/// it a second time (inference keeps them folded and packed).
public enum ExplainableLayers: Sendable {
    /// The last block before pooling (what pytorch-grad-cam's users pick for these networks): the classifier's
    /// parameters are kept, a few megabytes.
    case lastBlock
    /// Any stage `summary` lists: every parameter is kept (the model's weights twice).
    case everyLayer
}

/// What an explanation's gradient starts from.
public enum ExplanationTarget: Sendable, Equatable {
    /// The class the model scores highest.
    case topClass
    /// The logit of class `index` (pytorch-grad-cam's `ClassifierOutputTarget`).
    case classIndex(Int)
    /// The cosine similarity of the embedding to another one — which parts of this face made it match that one
    /// (pytorch-grad-cam's `SimilarityToConceptTarget`).
    case similarity(to: [Float])

    /// Whether the target is a similarity (one batch explains classes or similarities, not both).
    public var isSimilarity: Bool { if case .similarity = self { true } else { false } }
}

/// One image's class activation map.
public struct Explanation: Sendable {
    /// The explained layer (a stage name, as `summary` lists them).
    public let layer: String
    public let method: CAMMethod
    /// The explained class, with its softmax probability (nil for a similarity target).
    public let classIndex: Int?
    public let probability: Float?
    /// The cosine similarity of a similarity target.
    public let similarity: Float?
    /// The map at the layer's resolution, `layerHeight × layerWidth`, row-major, in [0, 1].
    public let layerMap: [Float]
    public let layerHeight: Int, layerWidth: Int
    /// The map at the network input's resolution (`inputSize²`, row-major, in [0, 1]), as pytorch-grad-cam returns it.
    public let map: [Float]
    public let inputSize: Int
}

public enum ExplanationError: Error, Equatable, CustomStringConvertible {
    case unknownLayer(String, model: String, layers: [String])
    case layerNotExplainable(String, model: String, lastBlock: String)
    case classOutOfRange(Int, classes: Int)
    case noClassifier(model: String)
    case similarityDimension(expected: Int, got: Int)
    case mixedTargets
    case targetCount(images: Int, targets: Int)

    public var description: String {
        switch self {
        case let .unknownLayer(layer, model, layers):
            return "\(model) has no layer '\(layer)'; its layers are " + layers.joined(separator: ", ")
        case let .layerNotExplainable(layer, model, last):
            return "this \(model) was loaded to explain its last block (\(last)), not \(layer): load it with "
                + "explainable: .everyLayer"
        case let .classOutOfRange(index, classes):
            return "class \(index) is out of range: the model has \(classes) classes (0 to \(classes - 1))"
        case let .noClassifier(model):
            return "\(model) has no classifier: explain a face by its similarity to another face's embedding"
        case let .similarityDimension(expected, got):
            return "the embedding to compare with has \(got) values; this model's embedding has \(expected)"
        case .mixedTargets:
            return "one batch explains either classes or similarities, not both"
        case let .targetCount(images, targets):
            return "\(targets) targets for \(images) images: give one per image, or none"
        }
    }
}

extension InceptionModel {
    /// The stages an explanation can name (`summary` lists them), in network order: those whose output every later
    /// layer depends on through it.
    public var explainableLayers: [String] {
        let last = lastBlockNode
        return Self.stageOutputs(graph).filter { $0.node <= last }.map(\.stage)
    }

    /// The last block before pooling: the stage whose output the global average pool reads.
    public var lastBlock: String { graph.nodes[lastBlockNode].stage }

    var lastBlockNode: Int {
        let pool = graph.nodes.firstIndex { if case .globalAveragePool = $0.operation { true } else { false } }!
        return graph.nodes[pool].inputs[0]
    }

    /// Each stage's last node, in order (the stage's output).
    static func stageOutputs(_ graph: Graph) -> [(stage: String, node: Int)] {
        var last: [String: Int] = [:], order: [String] = []
        for (i, node) in graph.nodes.enumerated() where i > 0 {
            if last[node.stage] == nil { order.append(node.stage) }
            last[node.stage] = i
        }
        return order.map { ($0, last[$0]!) }
    }

    /// The unfolded parameters an explanation of `explainable` layers needs: those of every node after the
    /// earliest of them.
    static func explanationParameters(_ weights: ModelWeights, _ explainable: ExplainableLayers) throws
        -> [String: [Float]]
    {
        let graph = weights.graph
        let pool = graph.nodes.firstIndex { if case .globalAveragePool = $0.operation { true } else { false } }
        guard let pool else { return [:] }
        let first = explainable == .lastBlock ? graph.nodes[pool].inputs[0] + 1 : 1
        var values: [String: [Float]] = [:]
        for i in first..<graph.nodes.count {
            for spec in graph.parameters(of: i) { values[spec.name] = try weights.parameter(spec.name) }
        }
        return values
    }

    /// The node of a layer named by its stage (`summary`'s names) or by the checkpoint's module name (timm's
    /// `features.21`, facenet-pytorch's `block8`); nil: the last block.
    func explainedNode(_ layer: String?) throws -> Int {
        guard let layer else { return lastBlockNode }
        let stages = Self.stageOutputs(graph).filter { $0.node <= lastBlockNode }
        let match = stages.first { $0.stage == layer } ?? stages.first { stage in
            graph.parameters.contains { $0.name.hasPrefix(stage.stage + ".")
                && name.checkpointKey($0.name).hasPrefix(layer + ".") }
        }
        guard let match else {
            throw ExplanationError.unknownLayer(layer, model: name.rawValue, layers: stages.map(\.stage))
        }
        return match.node
    }

    /// The gradient tail from `layer` to `output`, made once.
    func explanationTail(layer: Int, output: Int) throws -> GradientTail {
        let key = "\(layer)>\(output)"
        if let tail = explanationTails.withLock({ $0[key] }) { return tail }
        let values = explanationParameters
        let tail: GradientTail
        do {
            tail = try GradientTail(graph: graph, layer: layer, output: output) { name in
                guard let value = values[name] else { throw ExplanationError.layerNotExplainable(
                    graph.nodes[layer].stage, model: self.name.rawValue, lastBlock: lastBlock) }
                return value
            }
        } catch GradientTail.CutError.notACut {
            throw ExplanationError.unknownLayer(graph.nodes[layer].stage, model: name.rawValue,
                                                layers: explainableLayers)
        }
        explanationTails.withLock { $0[key] = tail }
        return tail
    }

    /// Class activation maps of `images`, through the model's own preprocessing: one forward pass of the batch, and
    /// one backward pass from the outputs to `layer` only (the last block before pooling by default).
    /// `targets`: one per image, or none for each image's top class.
    public func explain(_ images: [RGBImage], targets: [ExplanationTarget]? = nil, method: CAMMethod = .gradCAM,
                        layer: String? = nil, threads: Int = Parallel.defaultThreads) throws -> [Explanation] {
        try explain(prepared: images.map(prepare), targets: targets, method: method, layer: layer, threads: threads)
    }

    /// `explain` of images already through `prepare`.
    public func explain(prepared images: [[Float]], targets: [ExplanationTarget]? = nil,
                        method: CAMMethod = .gradCAM, layer: String? = nil,
                        threads: Int = Parallel.defaultThreads) throws -> [Explanation] {
        guard !images.isEmpty else { return [] }
        let targets = targets ?? Array(repeating: .topClass, count: images.count)
        guard targets.count == images.count else {
            throw ExplanationError.targetCount(images: images.count, targets: targets.count)
        }
        let node = try explainedNode(layer)
        let seeding = try ExplanationSeeds(model: self, targets: targets)
        let tail = try explanationTail(layer: node, output: seeding.output)
        let input = Tensor(shape: [images.count, inputSize, inputSize, 3], scalars: images.flatMap { $0 })
        var activations = try compiled.run(input, output: node, threads: threads)
        let s = graph.nodes[node].channels
        if activations.shape.count == 2 {
            activations = Tensor(shape: [images.count, 1, 1, s], scalars: activations.scalars)
        }
        let (output, gradients) = try tail.run(activations: activations, threads: threads) { try seeding.seed($0) }
        let (h, w, c) = (activations.shape[1], activations.shape[2], activations.shape[3])
        let per = h * w * c
        return try images.indices.map { b in
            let a = Array(activations.scalars[(b * per)..<((b + 1) * per)])
            let g = Array(gradients.scalars[(b * per)..<((b + 1) * per)])
            let maps = ClassActivationMap.maps(method, activations: a, gradients: g, height: h, width: w, channels: c,
                                               inputHeight: inputSize, inputWidth: inputSize)
            let resolved = try seeding.resolved(output, row: b)
            return Explanation(layer: graph.nodes[node].stage, method: method, classIndex: resolved.classIndex,
                               probability: resolved.probability, similarity: resolved.similarity,
                               layerMap: maps.layer, layerHeight: h, layerWidth: w, map: maps.input,
                               inputSize: inputSize)
        }
    }
}

/// The gradients an explanation starts from (∂target/∂output), and what each image's target resolved to.
struct ExplanationSeeds {
    let targets: [ExplanationTarget]
    let output: Int
    let similarity: Bool

    init(model: InceptionModel, targets: [ExplanationTarget]) throws {
        let graph = model.graph
        similarity = targets.contains(where: \.isSimilarity)
        if similarity {
            guard targets.allSatisfy(\.isSimilarity) else {
                throw ExplanationError.mixedTargets
            }
            output = graph.outputs[model.embeddingOutput]!
            for case let .similarity(to) in targets where to.count != graph.nodes[output].channels {
                throw ExplanationError.similarityDimension(expected: graph.nodes[output].channels, got: to.count)
            }
        } else {
            guard let logits = graph.outputs[.logits] else {
                throw ExplanationError.noClassifier(model: model.name.rawValue)
            }
            output = logits
            for case let .classIndex(k) in targets where k < 0 || k >= graph.nodes[logits].channels {
                throw ExplanationError.classOutOfRange(k, classes: graph.nodes[logits].channels)
            }
        }
        self.targets = targets
    }

    /// ∂(Σ targets)/∂output for the batch's output `[n, width]`.
    func seed(_ y: Tensor) throws -> [Float] {
        let (n, width) = (y.shape[0], y.count / y.shape[0])
        var seed = [Float](repeating: 0, count: y.count)
        for b in 0..<n {
            let row = Array(y.scalars[(b * width)..<((b + 1) * width)])
            switch targets[b] {
            case .topClass: seed[b * width + Self.argmax(row)] = 1
            case let .classIndex(k): seed[b * width + k] = 1
            case let .similarity(to):
                for (j, d) in Self.cosineGradient(row, to).enumerated() { seed[b * width + j] = Float(d) }
            }
        }
        return seed
    }

    /// What row b's target is: the class and its probability, or the similarity.
    func resolved(_ y: Tensor, row b: Int) throws -> (classIndex: Int?, probability: Float?, similarity: Float?) {
        let width = y.count / y.shape[0]
        let row = Array(y.scalars[(b * width)..<((b + 1) * width)]).map(Double.init)
        switch targets[b] {
        case let .similarity(to):
            return (nil, nil, Float(Self.cosine(row, to.map(Double.init))))
        case .topClass, .classIndex:
            let k = if case let .classIndex(k) = targets[b] { k } else { Self.argmax(row.map(Float.init)) }
            let top = row.max()!
            let total = row.reduce(0) { $0 + exp($1 - top) }
            return (k, Float(exp(row[k] - top) / total), nil)
        }
    }

    /// The first index of the largest value (numpy's `argmax`).
    static func argmax(_ row: [Float]) -> Int {
        row.indices.reduce(0) { row[$1] > row[$0] ? $1 : $0 }
    }

    static func cosine(_ x: [Double], _ y: [Double]) -> Double {
        let (nx, ny) = (x.reduce(0) { $0 + $1 * $1 }.squareRoot(), y.reduce(0) { $0 + $1 * $1 }.squareRoot())
        return zip(x, y).reduce(0) { $0 + $1.0 * $1.1 } / max(nx * ny, 1e-8)
    }

    /// ∂cos(x, y)/∂x = y / (‖x‖‖y‖) − cos · x / ‖x‖².
    static func cosineGradient(_ x: [Float], _ y: [Float]) -> [Double] {
        let (xd, yd) = (x.map(Double.init), y.map(Double.init))
        let (nx, ny) = (xd.reduce(0) { $0 + $1 * $1 }.squareRoot(), yd.reduce(0) { $0 + $1 * $1 }.squareRoot())
        let c = cosine(xd, yd)
        return zip(xd, yd).map { $0.1 / max(nx * ny, 1e-8) - c * $0.0 / max(nx * nx, 1e-16) }
    }
}
