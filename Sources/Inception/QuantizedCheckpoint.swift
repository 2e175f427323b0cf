import Foundation
import InceptionEngine
import InceptionIO

/// A checkpoint `inception quantize` wrote: the fp32 checkpoint's tensors under the same keys, except that each
/// quantised convolution's `….weight` is I8 (OIHW, the layer's own weights before its BatchNorm is folded, symmetric
/// per output channel) and three tensors sit beside it:
///
///   `….weight_scale`      F32 [out]  weight ≈ q · weight_scale[o]
///   `….input_scale`       F32 [1]    the layer's input x ≈ (u − input_zero_point) · input_scale, u in 0…255
///   `….input_zero_point`  U8  [1]
///
/// and `__metadata__` says `quantization: int8` (with how it was calibrated). Loaded strictly: every I8 weight has
/// its three companions with these dtypes and shapes, and nothing else is added. Seen as a `TensorFile`, it is the
/// fp32 checkpoint of the dequantised weights (so it also runs, and exports, at fp32).
public struct QuantizedCheckpoint: TensorFile, Sendable {
    public static let companions = ["weight_scale", "input_scale", "input_zero_point"]

    let file: SafeTensorsFile
    /// The keys of the I8 weights.
    public let quantizedKeys: Set<String>
    public let shapes: [String: [Int]]
    public var metadata: [String: String] { file.metadata }

    /// Whether the file's metadata marks it as quantised.
    public static func isQuantized(_ file: any TensorFile) -> Bool { file.metadata["quantization"] == "int8" }

    public init(_ file: SafeTensorsFile) throws {
        self.file = file
        var quantized = Set<String>(), shapes = file.entries.mapValues(\.shape)
        for (key, entry) in file.entries where entry.dtype == .I8 {
            guard key.hasSuffix(".weight"), entry.shape.count == 4, entry.shape[0] > 0 else {
                throw QuantizedCheckpointError.unexpected(key: key, reason: "only convolution weights can be I8")
            }
            let prefix = String(key.dropLast("weight".count))
            let expected: [(String, SafeTensorsFile.DType, [Int])] = [
                ("weight_scale", .F32, [entry.shape[0]]), ("input_scale", .F32, [1]), ("input_zero_point", .U8, [1]),
            ]
            for (suffix, dtype, shape) in expected {
                guard let companion = file.entries[prefix + suffix] else {
                    throw QuantizedCheckpointError.unexpected(key: key, reason: "it has no '\(prefix + suffix)'")
                }
                guard companion.dtype == dtype, companion.shape == shape else {
                    throw QuantizedCheckpointError.unexpected(
                        key: prefix + suffix, reason: "expected \(dtype.rawValue) \(shape), found "
                            + "\(companion.dtype.rawValue) \(companion.shape)")
                }
                shapes[prefix + suffix] = nil
            }
            quantized.insert(key)
        }
        for key in shapes.keys where Self.companions.contains(where: { key.hasSuffix("." + $0) }) {
            let weight = key[..<key.lastIndex(of: ".")!] + ".weight"
            throw QuantizedCheckpointError.unexpected(key: key, reason: "'\(weight)' is not an I8 weight")
        }
        (self.quantizedKeys, self.shapes) = (quantized, shapes)
    }

    /// A tensor as floats: an I8 weight dequantised (q · weight_scale[o]).
    public func floats(_ key: String) throws -> [Float] {
        guard let q = try int8(key) else { return try file.floats(key) }
        let perOutput = q.q.count / q.weightScales.count
        return q.q.indices.map { Float(q.q[$0]) * q.weightScales[$0 / perOutput] }
    }

    /// The integers and scales of a quantised weight; nil for a tensor stored as floats.
    package func int8(_ key: String) throws -> Int8Weights? {
        guard quantizedKeys.contains(key) else { return nil }
        let prefix = String(key.dropLast("weight".count))
        let q = try file.bytes(key, dtype: .I8).map { Int8(bitPattern: $0) }
        let scales = try file.floats(prefix + "weight_scale"), inputScale = try file.floats(prefix + "input_scale")[0]
        let zeroPoint = Int(try file.bytes(prefix + "input_zero_point", dtype: .U8)[0])
        guard scales.allSatisfy({ $0.isFinite && $0 >= 0 }), inputScale.isFinite, inputScale > 0 else {
            throw QuantizedCheckpointError.unexpected(key: key, reason: "its scales must be finite and positive")
        }
        guard !q.contains(-128) else {
            throw QuantizedCheckpointError.unexpected(key: key, reason: "symmetric int8 weights lie in −127…127")
        }
        return Int8Weights(q: q, weightScales: scales, inputScale: inputScale, inputZeroPoint: zeroPoint)
    }
}

public enum QuantizedCheckpointError: Error, Equatable, CustomStringConvertible {
    case unexpected(key: String, reason: String)

    public var description: String {
        switch self {
        case let .unexpected(key, reason): return "quantised checkpoint is malformed: tensor '\(key)': \(reason)"
        }
    }
}
