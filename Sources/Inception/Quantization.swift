import Foundation
import InceptionEngine
import InceptionIO

/// Post-training static quantisation to int8 (`inception quantize`): per-output-channel symmetric weights and, per
/// layer input, a u8 scale and zero point from the ranges calibration images reach.
///
/// Calibration is min-max: each convolution's input range is the smallest and largest value it takes over all the
/// calibration images, widened to include 0 (so that 0 and padding are exact). Chosen over percentile and entropy
/// (KL) calibration because the networks' convolution inputs are ReLU outputs, pools and concatenations of them
/// whose largest values are the ones a classifier reads; clipping them (what percentile and entropy methods do) pays
/// off for heavy-tailed inputs with many images, and min-max needs no histogram and no choice of percentile. The
/// accuracy it gives is measured in docs/performance.md.
///
/// The model's first convolution (it reads the normalised image, three channels) stays fp32: it is ~0.1 % of the
/// network's multiply–adds, and its input is not a ReLU output. Linear layers stay fp32 too (they are not convolutions
/// in the graph).
public enum Quantization {
    /// The convolutions to quantise: their weights' graph names and the node each reads.
    package static func layers(_ graph: Graph) -> [(weight: String, input: Int)] {
        graph.nodes.compactMap { node in
            guard case let .convolution(_, p, _) = node.operation else { return nil }
            var input = node.inputs[0]
            while case .dropout = graph.nodes[input].operation { input = graph.nodes[input].inputs[0] }
            if case .input = graph.nodes[input].operation { return nil }
            return (p.weight, input)
        }
    }

    /// Each node's smallest and largest value, over the images seen so far.
    public struct Ranges: Sendable {
        public var low: [Int: Float] = [:], high: [Int: Float] = [:]
        public var images = 0

        public init() {}

        /// The u8 scale and zero point of a node's range (widened to include 0).
        public func inputQuantization(_ node: Int) -> (scale: Float, zeroPoint: Int) {
            let low = min(0, self.low[node] ?? 0), high = max(0, self.high[node] ?? 0)
            guard high > low else { return (1, 0) }
            let scale = (high - low) / 255
            return (scale, Int((-low / scale).rounded()))
        }
    }

    /// Runs `batch` (NHWC, preprocessed) through an fp32 model and widens `ranges` with the values every
    /// quantised layer's input takes.
    public static func calibrate(_ model: InceptionModel, batch: Tensor, into ranges: inout Ranges,
                                 threads: Int = Parallel.defaultThreads) throws {
        let nodes = Set(layers(model.graph).map(\.input))
        var seen = ranges
        _ = try model.compiled.run(batch, threads: threads, inspect: { node, values in
            guard nodes.contains(node) else { return }
            var (low, high) = (seen.low[node] ?? .infinity, seen.high[node] ?? -.infinity)
            for p in 0..<values.pixels {
                let pixel = values.base + p * values.pixelStride
                for c in 0..<values.c {
                    low = min(low, pixel[c])
                    high = max(high, pixel[c])
                }
            }
            (seen.low[node], seen.high[node]) = (low, high)
        })
        seen.images += batch.shape[0]
        ranges = seen
    }

    /// A layer's weights (OIHW) as symmetric int8, per output channel: q = round(w / s), s = max |w| / 127.
    public static func quantize(weights: [Float], outChannels: Int) -> (q: [Int8], scales: [Float]) {
        let perOutput = weights.count / outChannels
        var q = [Int8](repeating: 0, count: weights.count), scales = [Float](repeating: 0, count: outChannels)
        for o in 0..<outChannels {
            let row = weights[(o * perOutput)..<((o + 1) * perOutput)]
            let largest = row.reduce(0) { max($0, abs($1)) }
            let s = largest > 0 ? largest / 127 : 1
            scales[o] = s
            for (j, w) in row.enumerated() { q[o * perOutput + j] = Int8(max(-127, min(127, (w / s).rounded()))) }
        }
        return (q, scales)
    }

    /// The quantised checkpoint of `weights` (``QuantizedCheckpoint``'s layout, the released key names) for the
    /// calibrated `ranges`, with its metadata.
    public static func checkpoint(_ weights: ModelWeights, ranges: Ranges) throws
        -> (tensors: [SafeTensorsFile.Tensor], metadata: [String: String])
    {
        let quantized = Dictionary(uniqueKeysWithValues: layers(weights.graph).map { ($0.weight, $0.input) })
        var tensors: [SafeTensorsFile.Tensor] = []
        for spec in weights.graph.parameters {
            let key = weights.name.checkpointKey(spec.name), values = try weights.parameter(spec.name)
            guard let input = quantized[spec.name] else {
                tensors.append(.init(name: key, shape: spec.shape, values: values))
                continue
            }
            let (q, scales) = quantize(weights: values, outChannels: spec.shape[0])
            let (inputScale, zeroPoint) = ranges.inputQuantization(input)
            let prefix = String(key.dropLast("weight".count))
            tensors += [
                .init(name: key, shape: spec.shape, dtype: .I8, bytes: q.withUnsafeBytes { Data($0) }),
                .init(name: prefix + "weight_scale", shape: [scales.count], values: scales),
                .init(name: prefix + "input_scale", shape: [1], values: [inputScale]),
                .init(name: prefix + "input_zero_point", shape: [1], dtype: .U8, bytes: Data([UInt8(zeroPoint)])),
            ]
        }
        var metadata = weights.metadata.strings
        metadata["model"] = weights.name.rawValue
        metadata["quantization"] = "int8"
        metadata["calibration"] = "min-max over \(ranges.images) images"
        return (tensors, metadata)
    }

    /// `weights` quantised in memory, calibrated on `batch` (benchmarks of int8 on random weights).
    public static func quantized(_ weights: ModelWeights, calibration batch: Tensor,
                                 threads: Int = Parallel.defaultThreads) throws -> ModelWeights {
        var ranges = Ranges()
        try calibrate(InceptionModel(weights), batch: batch, into: &ranges, threads: threads)
        let (tensors, metadata) = try checkpoint(weights, ranges: ranges)
        let data = try SafeTensorsFile.serialized(tensors, metadata: metadata)
        return try ModelWeights(weights.name, tensors: try SafeTensorsFile(data: data))
    }
}
