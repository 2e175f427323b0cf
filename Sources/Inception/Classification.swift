import Foundation
import InceptionEngine
import InceptionIO

/// One class of a classification, with its probability.
public struct Prediction: Sendable, Equatable {
    public let index: Int
    public let label: String
    /// The WordNet id for ImageNet classes.
    public let wordNetID: String?
    public let probability: Float

    package init(index: Int, label: String, wordNetID: String?, probability: Float) {
        (self.index, self.label, self.wordNetID, self.probability) = (index, label, wordNetID, probability)
    }
}

extension InceptionModel {
    /// The label of class `index`: the checkpoint's own class names when it has them; else a 1000-way classifier
    /// uses ImageNet-1k's classes in timm's order, and a 1001-way one (TF-slim checkpoints) has class 0 = background
    /// and ImageNet's classes shifted right by one.
    public func label(_ index: Int) -> (name: String, wordNetID: String?) {
        if let classNames { return (classNames[index], nil) }
        switch classes {
        case 1000: return (imageNetClasses[index].name, imageNetClasses[index].wordNetID)
        case 1001: return index == 0 ? ("background", nil) : (imageNetClasses[index - 1].name,
                                                              imageNetClasses[index - 1].wordNetID)
        default: return ("class \(index)", nil)
        }
    }

    /// Top-`top` classes with softmax probabilities for each image, through the model's own preprocessing.
    public func classify(_ images: [RGBImage], top: Int = 5,
                         threads: Int = Parallel.defaultThreads) throws -> [[Prediction]] {
        try classify(prepared: images.map(prepare), top: top, threads: threads)
    }

    /// One image as the network takes it: its normalised pixels at the model's input size (NHWC), after the model's
    /// own preprocessing. Preparing each image as it is decoded keeps a batch small whatever the photos' size.
    public func prepare(_ image: RGBImage) -> [Float] { name.spec.preprocessing.apply(image, inputSize: inputSize) }

    /// `classify` of images already through `prepare`.
    public func classify(prepared images: [[Float]], top: Int = 5,
                         threads: Int = Parallel.defaultThreads) throws -> [[Prediction]] {
        guard graph.outputs[.logits] != nil else { throw InputError.unknownOutput(.logits, model: name.rawValue,
            available: outputNames) }
        let logits = try compiled.run(batch(images), output: graph.outputs[.logits], threads: threads)
        return predictions(logits: try finite(logits, output: .logits), top: top)
    }

    private func batch(_ prepared: [[Float]]) -> Tensor {
        Tensor(shape: [prepared.count, inputSize, inputSize, 3], scalars: prepared.flatMap { $0 })
    }

    /// Softmax and top-k of a `[n, classes]` logits tensor.
    public func predictions(logits: Tensor, top: Int) -> [[Prediction]] {
        let n = logits.shape[0], c = logits.shape[1]
        return (0..<n).map { i in
            let p = softmax(logits.scalars[(i * c)..<((i + 1) * c)].map(Double.init))
            return topIndices(p, top).map { k in
                let (label, wnid) = label(k)
                return Prediction(index: k, label: label, wordNetID: wnid, probability: Float(p[k]))
            }
        }
    }

    /// The face model's L2-normalised embedding, or for the other models the pooled features before the
    /// classifier: `[n, dimension]`.
    public func embed(_ images: [RGBImage], threads: Int = Parallel.defaultThreads) throws -> Tensor {
        try embed(prepared: images.map(prepare), threads: threads)
    }

    /// `embed` of images already through `prepare`.
    public func embed(prepared images: [[Float]], threads: Int = Parallel.defaultThreads) throws -> Tensor {
        let output = graph.outputs[.embedding] ?? graph.outputs[.features]!
        let result = try compiled.run(batch(images), output: output, threads: threads)
        return try finite(result, output: embeddingOutput)
    }
}

/// exp(x − max) / Σ exp(x − max): a row of logits as probabilities (`predictions`, crops and ensembles).
func softmax(_ row: [Double]) -> [Double] {
    let m = row.max() ?? 0
    let e = row.map { Foundation.exp($0 - m) }
    let sum = e.reduce(0, +)
    return e.map { $0 / sum }
}

/// The indices of the `k` largest of `values`, largest first, equal values by the lower index: the order of
/// `classify`, the server's `top` and the Open Inference classification extension.
public func topIndices<T: Comparable>(_ values: [T], _ k: Int) -> [Int] {
    Array(values.indices.sorted { values[$0] > values[$1] || (values[$0] == values[$1] && $0 < $1) }.prefix(k))
}
