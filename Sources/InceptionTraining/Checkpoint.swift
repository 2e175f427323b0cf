import Foundation
import Inception
import InceptionEngine
import InceptionIO

/// Parameters for training: from a released-layout checkpoint (strictly verified, as `InceptionModel` loads), or a
/// fresh initialisation; and back to a checkpoint in the released layout, which timm loads strictly.
extension ModelName {
    /// Every parameter and buffer of `graph` by graph name, read from `url` (the checkpoint's key names). With a
    /// `graph` whose classifier differs from the file's, the classifier is left out of the check and newly
    /// initialised (fine-tuning on new classes). `repeats`: the reduced depth `graph` was built with, if any.
    package func trainingValues(for graph: Graph, weights url: URL, seed: UInt64,
                               repeats: [Int]? = nil) throws -> [String: [Float]] {
        let file = inReleasedLayout(try openTensorFile(url))
        let classifier = String(spec.classifierWeight.dropLast("weight".count))
        let fileClasses = file.shapes[checkpointKey(spec.classifierWeight)]?.first
        let keepClassifier = fileClasses == graph.outputs[.logits].map { graph.nodes[$0].channels }
        try InceptionModel.verify(self.graph(classes: fileClasses, repeats: repeats), self, file)
        var values: [String: [Float]] = [:]
        for spec in graph.parameters where keepClassifier || !spec.name.hasPrefix(classifier) {
            values[spec.name] = try InceptionModel.finiteFloats(file, checkpointKey(spec.name))
        }
        if !keepClassifier {
            for (name, v) in Self.initialValues(graph, seed: seed) where name.hasPrefix(classifier) { values[name] = v }
        }
        return values
    }

    /// A fresh start: He-uniform convolution weights (bound √(6 / fan-in)), PyTorch's default for linear layers
    /// (uniform ± 1/√fan-in), zero biases, BatchNorm γ = 1, β = 0, running mean 0, variance 1.
    package static func initialValues(_ graph: Graph, seed: UInt64) -> [String: [Float]] {
        var rng = SplitMix64(seed)
        var values: [String: [Float]] = [:]
        for spec in graph.parameters {
            let n = spec.count
            switch spec.role {
            case .runningVariance, .normScale: values[spec.name] = [Float](repeating: 1, count: n)
            case .runningMean, .bias, .normShift: values[spec.name] = [Float](repeating: 0, count: n)
            case .slope: values[spec.name] = [Float](repeating: 0.25, count: n)  // nn.PReLU's initial slope
            case .weight:
                let fanIn = spec.shape.dropFirst().reduce(1, *)
                let bound = spec.shape.count == 4 ? (6 / Float(fanIn)).squareRoot() : 1 / Float(fanIn).squareRoot()
                values[spec.name] = (0..<n).map { _ in rng.uniform(-bound, bound) }
            }
        }
        return values
    }

    /// The tensors of a checkpoint in the released layout (timm's or facenet-pytorch's key names and shapes).
    package func checkpointTensors(_ graph: Graph, _ values: [String: [Float]]) -> [(name: String, shape: [Int],
        values: [Float])] {
        graph.parameters.map { (checkpointKey($0.name), $0.shape, values[$0.name]!) }
    }
}

extension ModelName {
    /// The auxiliary head's parameters of `graph` (a network built with `auxiliaryHead`) from `url`, a file of its
    /// own under our names (`auxiliary.safetensors` in a run folder): every tensor there with its shape, no other.
    package func auxiliaryValues(for graph: Graph, weights url: URL) throws -> [String: [Float]] {
        guard let head = graph.subgraph(stage: OutputName.auxLogits.rawValue) else { preconditionFailure("""
            \(self): no auxiliary head in the graph
            """) }
        let file = try SafeTensorsFile(contentsOf: url)
        try InceptionModel.verify(head, self, file)
        var values: [String: [Float]] = [:]
        for spec in head.parameters { values[spec.name] = try InceptionModel.finiteFloats(file,
            checkpointKey(spec.name)) }
        return values
    }
}
