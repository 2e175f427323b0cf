import Foundation
import Inception
import InceptionEngine

/// From the engine's graph (NHWC, named parameters) to an ONNX graph (NCHW, initializers): each node becomes the
/// standard operators that compute it, its result a tensor named after the node.
struct Lowering {
    let weights: ModelWeights
    let opset: Int
    let batch: ONNXBatch
    private(set) var graph = Onnx_GraphProto()
    /// Each graph node's result: its tensor's name and rank (4 for feature maps, 2 once pooled and flattened).
    private var results: [(name: String, rank: Int)] = []
    private var used = Set<String>()
    /// Every node's shape at batch 1 and the weights' input size (nil where the size is too small for the network).
    private let shapes: [Shape]?

    init(weights: ModelWeights, opset: Int, batch: ONNXBatch) {
        (self.weights, self.opset, self.batch) = (weights, opset, batch)
        shapes = weights.graph.inferShapes(n: 1, h: weights.inputSize, w: weights.inputSize)
        graph.name = weights.name.rawValue
        // The outputs' names are reserved, so that no intermediate tensor takes one.
        used = Set(weights.graph.outputs.keys.map(\.rawValue))
    }

    mutating func lowerAll() throws {
        let nodes = weights.graph.nodes
        for (i, node) in nodes.enumerated() {
            let inputs = node.inputs.map { results[$0] }
            results.append(try weights.namingCheckpointKeys { try lower(node, inputs) })
            if i == 0 { graph.input = [valueInfo("input", node: 0)] }
        }
        for (output, node) in weights.graph.outputs.sorted(by: { $0.key < $1.key }) {
            let name = output.rawValue
            add("Identity", [results[node].name], name: name, output: name)
            graph.output.append(valueInfo(name, node: node))
        }
    }

    /// The tensor computing `node` from `inputs`.
    private mutating func lower(_ node: Node, _ inputs: [(name: String, rank: Int)]) throws
        -> (name: String, rank: Int)
    {
        let x = inputs.first?.name ?? "", rank = inputs.first?.rank ?? 4
        switch node.operation {
        case .input:
            used.insert("input")
            return ("input", 4)
        case let .convolution(g, p, activation):
            try requireMap(node, rank)
            let (w, b) = try CompiledGraph.folded(g, p, weights.parameter)
            let x = try quantized(x, p.weight, node.name)
            let conv = add("Conv", [x, constant("\(node.name).weight", w, [g.outChannels, g.inChannels, g.kernelH,
                                                                           g.kernelW])]
                                + (b.map { [constant("\(node.name).bias", $0, [g.outChannels])] } ?? []),
                           name: node.name,
                           attributes: [.ints("kernel_shape", [g.kernelH, g.kernelW]),
                                        .ints("strides", [g.strideH, g.strideW]),
                                        .ints("pads", [g.padH, g.padW, g.padH, g.padW])])
            return (activated(conv, activation, node.name), 4)
        case let .maxPool(k, stride, ceilMode):
            try requireMap(node, rank)
            return (add("MaxPool", [x], name: node.name,
                        attributes: [.ints("kernel_shape", [k, k]), .ints("strides", [stride, stride]),
                                     .int("ceil_mode", ceilMode ? 1 : 0)]), 4)
        case let .averagePool(k, stride, padding):
            try requireMap(node, rank)
            return (add("AveragePool", [x], name: node.name,
                        attributes: [.ints("kernel_shape", [k, k]), .ints("strides", [stride, stride]),
                                     .ints("pads", Array(repeating: padding, count: 4)),
                                     .int("count_include_pad", 0)]), 4)
        case .concat:
            return (add("Concat", inputs.map(\.name), name: node.name, attributes: [.int("axis", 1)]), rank)
        case let .residual(scale, activation):
            let branch = scale == 1 ? inputs[1].name
                : add("Mul", [inputs[1].name, constant("\(node.name).scale", [scale], [])], name: "\(node.name).scale")
            let sum = add("Add", [x, branch], name: node.name)
            return (activated(sum, activation, node.name), rank)
        case .globalAveragePool:
            try requireMap(node, rank)
            let pooled = add("GlobalAveragePool", [x], name: node.name)
            return (add("Flatten", [pooled], name: "\(node.name).flatten", attributes: [.int("axis", 1)]), 2)
        case let .linear(inFeatures, outFeatures, weight, bias):
            guard rank == 2 else {
                throw ONNXExportError.unsupported(node: node.name, reason: "a linear layer on a map")
            }
            let w = constant(weight, try weights.parameter(weight), [outFeatures, inFeatures])
            let b = try bias.map { [constant($0, try weights.parameter($0), [outFeatures])] } ?? []
            return (add("Gemm", [x, w] + b, name: node.name, attributes: [.int("transB", 1)]), 2)
        case .dropout:
            return inputs[0]
        case let .batchNorm(prefix, epsilon):
            // Folded to its affine map, per channel (axis 1 in both ranks).
            let (scale, shift) = try CompiledGraph.batchNormAffine(prefix, epsilon, weights.parameter)
            let shape = rank == 2 ? [node.channels] : [node.channels, 1, 1]
            let scaled = add("Mul", [x, constant("\(prefix).scale", scale, shape)], name: "\(node.name).scale")
            return (add("Add", [scaled, constant("\(prefix).shift", shift, shape)], name: node.name), rank)
        case .l2Normalize:
            return (l2Normalized(x, name: node.name), rank)
        case let .prelu(weight):
            let shape = rank == 2 ? [node.channels] : [node.channels, 1, 1]
            return (add("PRelu", [x, constant(weight, try weights.parameter(weight), shape)], name: node.name), rank)
        case .softmax:
            return (add("Softmax", [x], name: node.name, attributes: [.int("axis", 1)]), rank)
        }
    }

    /// `x / max(‖x‖₂ over channels, 1e-12)`, as `F.normalize`.
    private mutating func l2Normalized(_ x: String, name: String) -> String {
        let norm: String
        if opset >= 18 {
            let axes = int64Constant("\(name).axes", [1])
            norm = add("ReduceL2", [x, axes], name: "\(name).norm", attributes: [.int("keepdims", 1)])
        } else {
            norm = add("ReduceL2", [x], name: "\(name).norm", attributes: [.ints("axes", [1]), .int("keepdims", 1)])
        }
        let floored = add("Max", [norm, constant("\(name).epsilon", [1e-12], [])], name: "\(name).floor")
        return add("Div", [x, floored], name: name)
    }

    private func requireMap(_ node: Node, _ rank: Int) throws {
        guard rank == 4 else {
            throw ONNXExportError.unsupported(node: node.name, reason: "a spatial operation after global pooling")
        }
    }

    private mutating func activated(_ x: String, _ activation: Activation, _ name: String) -> String {
        activation == .relu ? add("Relu", [x], name: "\(name).relu") : x
    }

    /// Adds an operator; returns its output's name (`output`, else one derived from `name`, unique).
    @discardableResult
    private mutating func add(_ op: String, _ inputs: [String], name: String, output: String? = nil,
                              attributes: [Onnx_AttributeProto] = []) -> String {
        let result = output ?? unique(name)
        graph.node.append(.with {
            $0.opType = op
            $0.name = result
            $0.input = inputs
            $0.output = [result]
            $0.attribute = attributes
        })
        return result
    }

    private mutating func unique(_ base: String) -> String {
        var name = base, k = 1
        while used.contains(name) { k += 1; name = "\(base)_\(k)" }
        used.insert(name)
        return name
    }

    /// An int8 layer's input as the layer sees it: quantised to u8 with its calibrated scale and zero point, and
    /// dequantised (QuantizeLinear, DequantizeLinear); `x` itself for an fp32 layer. The weights stay float (the
    /// dequantised integers, BatchNorm folded), so the file computes what `--precision int8` computes.
    private mutating func quantized(_ x: String, _ weight: String, _ name: String) throws -> String {
        guard let q = try weights.int8?(weight) else { return x }
        let scale = constant("\(name).input_scale", [q.inputScale], [])
        let zero = unique("\(name).input_zero_point")
        graph.initializer.append(.with {
            $0.name = zero
            $0.dataType = Int32(Onnx_TensorProto.DataType.uint8.rawValue)
            $0.rawData = Data([UInt8(q.inputZeroPoint)])
        })
        let u8 = add("QuantizeLinear", [x, scale, zero], name: "\(name).quantize")
        return add("DequantizeLinear", [u8, scale, zero], name: "\(name).dequantize")
    }

    /// A float32 initializer, stored as little-endian raw data.
    private mutating func constant(_ name: String, _ values: [Float], _ shape: [Int]) -> String {
        let name = unique(name)
        graph.initializer.append(.with {
            $0.name = name
            $0.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
            $0.dims = shape.map(Int64.init)
            $0.rawData = values.map(\.bitPattern.littleEndian).withUnsafeBytes { Data($0) }
        })
        return name
    }

    private mutating func int64Constant(_ name: String, _ values: [Int64]) -> String {
        let name = unique(name)
        graph.initializer.append(.with {
            $0.name = name
            $0.dataType = Int32(Onnx_TensorProto.DataType.int64.rawValue)
            $0.dims = [Int64(values.count)]
            $0.int64Data = values
        })
        return name
    }

    /// The graph input's or an output's type: float32 with the batch dimension and the node's shape.
    private func valueInfo(_ name: String, node: Int) -> Onnx_ValueInfoProto {
        let shape = shapes?[node]
        let channels = weights.graph.nodes[node].channels
        let rest = results[node].rank == 2 || shape == nil ? [channels] : [channels, shape!.h, shape!.w]
        return .with { info in
            info.name = name
            info.type.tensorType.elemType = Int32(Onnx_TensorProto.DataType.float.rawValue)
            var first = Onnx_TensorShapeProto.Dimension()
            switch batch {
            case .dynamic: first.dimParam = "batch"
            case let .fixed(n): first.dimValue = Int64(n)
            }
            info.type.tensorType.shape.dim = [first] + rest.map { c in .with { $0.dimValue = Int64(c) } }
        }
    }
}

extension Onnx_AttributeProto {
    static func int(_ name: String, _ value: Int) -> Self {
        .with { $0.name = name; $0.type = .int; $0.i = Int64(value) }
    }

    static func ints(_ name: String, _ values: [Int]) -> Self {
        .with { $0.name = name; $0.type = .ints; $0.ints = values.map(Int64.init) }
    }
}
