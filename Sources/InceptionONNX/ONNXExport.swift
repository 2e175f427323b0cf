import Foundation
import Inception
import InceptionIO
import SwiftProtobuf

/// The batch dimension of an exported model's input and outputs.
public enum ONNXBatch: Sendable, Equatable, CustomStringConvertible {
    /// A symbolic dimension named `batch`: one file runs any batch size.
    case dynamic
    case fixed(Int)

    /// `dynamic` or a count in 1…4096.
    public init?(_ text: String) {
        if text == "dynamic" { self = .dynamic; return }
        guard let n = Int(text), (1...4096).contains(n) else { return nil }
        self = .fixed(n)
    }

    public var description: String {
        switch self {
        case .dynamic: return "dynamic"
        case let .fixed(n): return "\(n)"
        }
    }
}

public enum ONNXExportError: Error, Equatable, CustomStringConvertible {
    case unsupportedOpset(Int)
    /// A node whose operation has no lowering at its place in the graph.
    case unsupported(node: String, reason: String)

    public var description: String {
        switch self {
        case let .unsupportedOpset(opset):
            return "opset \(opset) is not supported: the export writes opsets \(ONNXExport.opsets.lowerBound)"
                + "…\(ONNXExport.opsets.upperBound)"
        case let .unsupported(node, reason): return "cannot export node '\(node)': \(reason)"
        }
    }
}

/// Writes a network's inference graph as an ONNX model of standard operators: BatchNorm folded into each
/// convolution (as the engine runs it), NCHW like PyTorch's export, the input `input` `[batch, 3, S, S]` (S the
/// weights' input size) and every named output of the network (`logits`, `features`, `embedding`) as a tensor of
/// that name. The model's metadata carries the network, its input size, preprocessing and class names.
public enum ONNXExport {
    /// The opsets the export writes (ONNX 1.8's 13 to ONNX 1.17's 22).
    public static let opsets = 13...22

    /// The serialised model.
    public static func serialized(_ weights: ModelWeights, opset: Int = 17, batch: ONNXBatch = .dynamic) throws
        -> Data
    {
        try model(weights, opset: opset, batch: batch).serializedBytes()
    }

    /// Writes the model to `url`.
    public static func write(_ weights: ModelWeights, to url: URL, opset: Int = 17, batch: ONNXBatch = .dynamic)
        throws
    {
        try FileOutput.write(try serialized(weights, opset: opset, batch: batch), to: url)
    }

    static func model(_ weights: ModelWeights, opset: Int, batch: ONNXBatch) throws -> Onnx_ModelProto {
        guard opsets.contains(opset) else { throw ONNXExportError.unsupportedOpset(opset) }
        var lowering = Lowering(weights: weights, opset: opset, batch: batch)
        try lowering.lowerAll()
        var model = Onnx_ModelProto()
        model.irVersion = irVersion(opset: opset)
        model.opsetImport = [.with { $0.domain = ""; $0.version = Int64(opset) }]
        model.producerName = "swift-inception"
        model.producerVersion = InceptionPackage.version
        model.docString = "\(weights.name.rawValue), exported by swift-inception \(InceptionPackage.version)"
        model.metadataProps = metadata(weights).map { entry in .with { $0.key = entry.key; $0.value = entry.value } }
        model.graph = lowering.graph
        return model
    }

    /// The IR version of the ONNX release that introduced `opset`, so that older runtimes load the file.
    public static func irVersion(opset: Int) -> Int64 {
        switch opset {
        case ...14: return 7
        case ...18: return 8
        case ...20: return 9
        default: return 10
        }
    }

    /// What a runtime needs to feed the model: the network, its input size and preprocessing, its class names; and
    /// whether it carries a quantisation.
    static func metadata(_ weights: ModelWeights) -> [(key: String, value: String)] {
        let p = weights.name.spec.preprocessing
        func list(_ values: [Float]) -> String { values.map { "\($0)" }.joined(separator: ",") }
        var entries: [(key: String, value: String)] = [
            ("model", weights.name.rawValue), ("input_size", "\(weights.inputSize)"), ("layout", "NCHW, RGB"),
            ("mean", list(p.mean)), ("std", list(p.std)), ("crop_fraction", "\(p.cropFraction)"),
            ("interpolation", "\(p.interpolation)"),
        ]
        if let names = weights.metadata.classNames, let data = try? JSONSerialization.data(withJSONObject: names) {
            entries.append(("classes", String(decoding: data, as: UTF8.self)))
        }
        if weights.int8 != nil {
            entries.append(("quantization", "int8: QuantizeLinear/DequantizeLinear (u8) on each int8 layer's input"))
        }
        return entries
    }
}
