/// A network as a graph of operations on NHWC feature maps. Model code builds it through `GraphBuilder` and
/// `Value`; the engine derives everything else from it: parameter names and shapes, output shapes, the
/// minimum input size, multiply-accumulate counts, and (in `CompiledGraph`) the fused execution plan.
/// Parameters are referenced by name and supplied when the graph is compiled, so one graph serves summary,
/// random-weight benchmarks and every checkpoint.

/// How a convolution's parameters are named. With `batchNorm`, the convolution is followed by an inference
/// BatchNorm whose `weight`, `bias`, `running_mean` and `running_var` live under that prefix; the engine folds
/// it into the convolution's weights and bias.
package struct ConvParameters: Sendable, Hashable {
    package var weight: String
    package var bias: String?
    package var batchNorm: String?
    package var epsilon: Float

    package init(weight: String, bias: String? = nil, batchNorm: String? = nil, epsilon: Float = 1e-3) {
        (self.weight, self.bias, self.batchNorm, self.epsilon) = (weight, bias, batchNorm, epsilon)
    }
}

package enum Operation: Sendable {
    case input
    /// Convolution, then (optionally) BatchNorm, then the activation.
    case convolution(ConvGeometry, ConvParameters, Activation)
    /// No padding. `ceilMode`: PyTorch's `ceil_mode=True` — a last, partial window at the bottom and right edges
    /// wherever one starts inside the map (MTCNN's pools); otherwise whole windows only.
    case maxPool(kernel: Int, stride: Int, ceilMode: Bool)
    /// Symmetric padding, excluded from the divisor.
    case averagePool(kernel: Int, stride: Int, padding: Int)
    /// Along channels, in input order.
    case concat
    /// `activation(inputs[0] + scale · inputs[1])`: the Inception-ResNet shortcut.
    case residual(scale: Float, activation: Activation)
    case globalAveragePool
    /// On an `n × 1 × 1 × inFeatures` map; weight `[outFeatures, inFeatures]` (PyTorch layout).
    case linear(inFeatures: Int, outFeatures: Int, weight: String, bias: String?)
    /// Identity at inference; the rate is kept for training.
    case dropout(rate: Float)
    /// Inference BatchNorm over channels, parameters under the prefix.
    case batchNorm(prefix: String, epsilon: Float)
    /// Divides each pixel's channel vector by its L2 norm (floored at 1e-12, as `F.normalize`).
    case l2Normalize
    /// PyTorch's `nn.PReLU(channels)`: x where x > 0, else slope[c] · x; the slopes are the parameter `weight`.
    case prelu(weight: String)
    /// Softmax across each pixel's channels (PyTorch's `nn.Softmax(dim=1)` on NCHW).
    case softmax
}

extension Operation {
    var isNotInput: Bool { if case .input = self { return false } else { return true } }
}

package struct Node: Sendable {
    package let operation: Operation
    package let inputs: [Int]
    package let channels: Int
    /// Full name, e.g. `inception_a.0.branch1.1`.
    package let name: String
    /// The top-level scope the node was built in (a stem layer or a block), for per-stage summaries.
    package let stage: String
}

package struct ParameterSpec: Sendable, Hashable {
    package let name: String
    package let shape: [Int]
    package let role: ParameterRole
    package var count: Int { shape.reduce(1, *) }
    /// BatchNorm running statistics: loaded from checkpoints, but not trainable parameters.
    package var isBuffer: Bool { role == .runningMean || role == .runningVariance }

    package init(name: String, shape: [Int], role: ParameterRole) {
        (self.name, self.shape, self.role) = (name, shape, role)
    }
}

/// What a parameter is to its layer — read by loading, initialisation and the optimiser, never guessed from its name.
package enum ParameterRole: Sendable, Hashable {
    /// A convolution's or linear layer's weight (rank 4 or 2).
    case weight
    /// A convolution's or linear layer's bias.
    case bias
    /// BatchNorm's γ and β (PyTorch's `weight` and `bias`).
    case normScale, normShift
    /// BatchNorm's running statistics (buffers).
    case runningMean, runningVariance
    /// PReLU's per-channel slopes for negative inputs.
    case slope

    /// Whether weight decay applies by default: to weights, not to biases and BatchNorm parameters (timm's rule).
    package var decaysByDefault: Bool { self == .weight }
}

package struct Shape: Sendable, Hashable, CustomStringConvertible {
    package var n: Int, h: Int, w: Int, c: Int
    package init(n: Int, h: Int, w: Int, c: Int) { (self.n, self.h, self.w, self.c) = (n, h, w, c) }
    package var count: Int { n * h * w * c }
    package var description: String { "\(n)×\(h)×\(w)×\(c)" }
}

package enum GraphError: Error, Equatable, CustomStringConvertible {
    case inputTooSmall(height: Int, width: Int, minimum: Int)
    case wrongInputChannels(expected: Int, got: Int)

    package var description: String {
        switch self {
        case let .inputTooSmall(h, w, minimum):
            return "input \(h)×\(w) is too small for this network: the minimum is \(minimum)×\(minimum)"
        case let .wrongInputChannels(expected, got):
            return "the network takes \(expected) input channels, got \(got)"
        }
    }
}

/// Parameter values the engine cannot use, named by the graph's parameter name (a loader maps it to its file's key).
public enum ParameterError: Error, Equatable, CustomStringConvertible {
    case negativeVariance(parameter: String, channel: Int, value: Float)
    /// Folding a BatchNorm into its convolution gave values beyond Float's range.
    case overflowAfterFolding(parameter: String)
    /// An int8 model's convolution merged with quantised siblings has no integers of its own.
    case notQuantized(parameter: String)
    /// Sibling convolutions of one input were calibrated with different input scales.
    case inputScalesDisagree(parameter: String)

    public var parameter: String {
        switch self {
        case let .negativeVariance(name, _, _), let .overflowAfterFolding(name), let .notQuantized(name),
             let .inputScalesDisagree(name):
            return name
        }
    }

    public var description: String {
        switch self {
        case let .negativeVariance(name, channel, value):
            return "tensor '\(name)' is a BatchNorm variance but holds \(value) (channel \(channel)); "
                + "a variance cannot be negative"
        case let .overflowAfterFolding(name):
            return "tensor '\(name)' overflows Float's range once its BatchNorm is folded in"
        case let .notQuantized(name):
            return "tensor '\(name)' has no int8 values, but the layers that share its input do"
        case let .inputScalesDisagree(name):
            return "tensor '\(name)' has another input scale than the layers that share its input"
        }
    }
}

/// The name of one of a graph's outputs — what a caller asks a model for. The networks' names (`logits`,
/// `features`, `embedding`, `aux_logits`) are declared below.
public struct OutputName: Hashable, Sendable, Comparable, ExpressibleByStringLiteral, CustomStringConvertible {
    public let rawValue: String

    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }

    public var description: String { rawValue }
    public static func < (a: OutputName, b: OutputName) -> Bool { a.rawValue < b.rawValue }
}

/// The outputs the networks name (declared here, beside the type, so that every module and the public API share
/// them).
extension OutputName {
    /// The classifier's scores, before softmax.
    public static let logits: OutputName = "logits"
    /// Pooled features, before the classifier (and before dropout).
    public static let features: OutputName = "features"
    /// The face model's L2-normalised 512-d embedding.
    public static let embedding: OutputName = "embedding"
    /// TF-slim's auxiliary classifier's scores (a training graph with the auxiliary head).
    public static let auxLogits: OutputName = "aux_logits"
}

package struct Graph: Sendable {
    package internal(set) var nodes: [Node]
    /// The primary output (logits, or the embedding of a face model).
    package internal(set) var output: Int
    /// Every named output: `logits`, `features` (pooled, before the classifier), `embedding`, …
    package internal(set) var outputs: [OutputName: Int]

    package var inputChannels: Int { nodes[0].channels }
    package var outputChannels: Int { nodes[output].channels }

    /// Every parameter and buffer, in build order, with the shape a PyTorch checkpoint stores.
    package var parameters: [ParameterSpec] { nodes.indices.flatMap(parameters(of:)) }

    /// The parameters and buffers node `i` owns.
    package func parameters(of i: Int) -> [ParameterSpec] {
        func batchNorm(_ prefix: String, _ c: Int) -> [ParameterSpec] {
            [ParameterSpec(name: "\(prefix).weight", shape: [c], role: .normScale),
             ParameterSpec(name: "\(prefix).bias", shape: [c], role: .normShift),
             ParameterSpec(name: "\(prefix).running_mean", shape: [c], role: .runningMean),
             ParameterSpec(name: "\(prefix).running_var", shape: [c], role: .runningVariance)]
        }
        switch nodes[i].operation {
        case let .convolution(g, p, _):
            let shape = [g.outChannels, g.inChannels, g.kernelH, g.kernelW]
            return [ParameterSpec(name: p.weight, shape: shape, role: .weight)]
                + (p.bias.map { [ParameterSpec(name: $0, shape: [g.outChannels], role: .bias)] } ?? [])
                + (p.batchNorm.map { batchNorm($0, g.outChannels) } ?? [])
        case let .linear(inFeatures, outFeatures, weight, bias):
            return [ParameterSpec(name: weight, shape: [outFeatures, inFeatures], role: .weight)]
                + (bias.map { [ParameterSpec(name: $0, shape: [outFeatures], role: .bias)] } ?? [])
        case let .batchNorm(prefix, _):
            return batchNorm(prefix, nodes[i].channels)
        case let .prelu(weight):
            return [ParameterSpec(name: weight, shape: [nodes[i].channels], role: .slope)]
        default:
            return []
        }
    }

    /// The top-level stages that own parameters (stem layers, blocks, the classifier), in build order.
    package var stagesWithParameters: [String] {
        var seen = Set<String>()
        return nodes.indices.filter { !parameters(of: $0).isEmpty }.map { nodes[$0].stage }
            .filter { seen.insert($0).inserted }
    }

    /// Trainable parameter count (BatchNorm running statistics excluded, as `sum(p.numel())` in PyTorch).
    package var parameterCount: Int { parameters.filter { !$0.isBuffer }.reduce(0) { $0 + $1.count } }

    /// The nodes of one stage (a stem layer or a block) as a graph of its own, fed by a new input in place of
    /// the stage's single input from outside it. Parameter names are unchanged.
    package func subgraph(stage: String) -> Graph? {
        let members = nodes.indices.filter { nodes[$0].stage == stage && nodes[$0].operation.isNotInput }
        let memberSet = Set(members)
        let external = Set(members.flatMap { nodes[$0].inputs }.filter { !memberSet.contains($0) })
        guard let last = members.last, external.count == 1, let source = external.first else { return nil }
        var index = [source: 0]
        var sub = [Node(operation: .input, inputs: [], channels: nodes[source].channels, name: "input", stage: "input")]
        for i in members {
            index[i] = sub.count
            let n = nodes[i]
            sub.append(Node(operation: n.operation, inputs: n.inputs.map { index[$0]! }, channels: n.channels,
                            name: n.name, stage: n.stage))
        }
        return Graph(nodes: sub, output: index[last]!, outputs: ["output": index[last]!])
    }

    /// The same graph with the node named `node` also available as the output `name` (intermediate features).
    package func addingOutput(_ name: OutputName, node: String) -> Graph? {
        guard let i = nodes.firstIndex(where: { $0.name == node }) else { return nil }
        var copy = self
        copy.outputs[name] = i
        return copy
    }

    /// Output shape of every node for an `n × h × w` input, or nil where some map would be empty.
    package func inferShapes(n: Int, h: Int, w: Int) -> [Shape]? {
        var shapes: [Shape] = []
        shapes.reserveCapacity(nodes.count)
        for node in nodes {
            let x = node.inputs.first.map { shapes[$0] } ?? Shape(n: n, h: h, w: w, c: node.channels)
            var s = Shape(n: x.n, h: x.h, w: x.w, c: node.channels)
            switch node.operation {
            case .input, .concat, .residual, .dropout, .batchNorm, .l2Normalize, .prelu, .softmax:
                break
            case let .convolution(g, _, _):
                (s.h, s.w) = g.outputSize(h: x.h, w: x.w)
            case let .maxPool(k, stride, ceilMode):
                s.h = Pooling.maxPoolOutputSize(x.h, kernel: k, stride: stride, ceilMode: ceilMode)
                s.w = Pooling.maxPoolOutputSize(x.w, kernel: k, stride: stride, ceilMode: ceilMode)
            case let .averagePool(k, stride, p):
                (s.h, s.w) = ((x.h + 2 * p - k) / stride + 1, (x.w + 2 * p - k) / stride + 1)
            case .globalAveragePool:
                (s.h, s.w) = (1, 1)
            case .linear:
                if x.h != 1 || x.w != 1 { return nil }
            }
            if s.h <= 0 || s.w <= 0 { return nil }
            if case .concat = node.operation,
               node.inputs.contains(where: { shapes[$0].h != s.h || shapes[$0].w != s.w }) {
                return nil
            }
            shapes.append(s)
        }
        return shapes
    }

    /// The smallest square input the network accepts.
    package var minimumInputSize: Int {
        var size = 1
        while inferShapes(n: 1, h: size, w: size) == nil && size < 4096 { size += 1 }
        return size
    }

    /// Output shapes, or a `GraphError` naming the minimum input size.
    package func shapes(n: Int, h: Int, w: Int) throws -> [Shape] {
        guard let shapes = inferShapes(n: n, h: h, w: w) else {
            throw GraphError.inputTooSmall(height: h, width: w, minimum: minimumInputSize)
        }
        return shapes
    }

    /// Multiply-accumulates of each node for the given shapes (convolutions and linear layers only, as
    /// timm's model cards and fvcore count them).
    package func macs(shapes: [Shape]) -> [Int] {
        nodes.indices.map { i in
            switch nodes[i].operation {
            case let .convolution(g, _, _): return shapes[i].count * g.depth
            case let .linear(inFeatures, outFeatures, _, _): return shapes[i].n * inFeatures * outFeatures
            default: return 0
            }
        }
    }
}

/// Builds a `Graph`. Names are scoped: inside `scope("inception_a.0") { … }` a convolution named
/// `branch1.0` owns the parameters `inception_a.0.branch1.0.*`.
package final class GraphBuilder {
    private(set) var nodes: [Node] = []
    private var scopes: [String] = []

    package init() {}

    package func input(channels: Int) -> Value {
        precondition(nodes.isEmpty, "the input must be the first node")
        return add(.input, [], channels: channels, name: "input")
    }

    package func scope<T>(_ name: String, _ body: () -> T) -> T {
        scopes.append(name)
        defer { scopes.removeLast() }
        return body()
    }

    package func qualified(_ name: String) -> String { (scopes + [name]).joined(separator: ".") }

    /// A graph whose only output is `output`, named `output`.
    package func finish(output: Value) -> Graph {
        Graph(nodes: nodes, output: output.id, outputs: ["output": output.id])
    }

    /// A graph with named outputs, `primary` among them.
    package func finish(outputs: [OutputName: Value], primary: OutputName) -> Graph {
        precondition(outputs[primary] != nil, "primary output \(primary) is not among \(outputs.keys)")
        return Graph(nodes: nodes, output: outputs[primary]!.id, outputs: outputs.mapValues(\.id))
    }

    @discardableResult
    func add(_ operation: Operation, _ inputs: [Value], channels: Int, name: String) -> Value {
        let node = Node(operation: operation, inputs: inputs.map(\.id), channels: channels,
                        name: qualified(name), stage: scopes.first ?? name)
        nodes.append(node)
        return Value(builder: self, id: nodes.count - 1, channels: channels)
    }
}

/// A symbolic feature map while a graph is being built.
package struct Value {
    package let builder: GraphBuilder
    package let id: Int
    package let channels: Int

    package func scope<T>(_ name: String, _ body: (Value) -> T) -> T { builder.scope(name) { body(self) } }

    /// A convolution named `name` (parameters `name.weight`, optional `name.bias`), optionally followed by the
    /// BatchNorm under `batchNorm`, then `activation`. `padding` is symmetric.
    package func convolution(_ name: String, _ outChannels: Int, kernel: (Int, Int), stride: Int = 1,
                            padding: (Int, Int) = (0, 0), bias: Bool, batchNorm: String?, epsilon: Float = 1e-3,
                            activation: Activation) -> Value {
        let g = ConvGeometry(inChannels: channels, outChannels: outChannels, kernel: kernel, stride: (stride, stride),
                             padding: padding)
        let p = ConvParameters(weight: builder.qualified("\(name).weight"),
                               bias: bias ? builder.qualified("\(name).bias") : nil,
                               batchNorm: batchNorm.map { builder.qualified($0) }, epsilon: epsilon)
        return builder.add(.convolution(g, p, activation), [self], channels: outChannels, name: name)
    }

    package func maxPool(_ kernel: Int, stride: Int, ceilMode: Bool = false, name: String = "max_pool") -> Value {
        builder.add(.maxPool(kernel: kernel, stride: stride, ceilMode: ceilMode), [self], channels: channels,
                    name: name)
    }

    /// PyTorch's `nn.PReLU(channels)` named `name` (its slopes are `name.weight`).
    package func prelu(_ name: String) -> Value {
        builder.add(.prelu(weight: builder.qualified("\(name).weight")), [self], channels: channels, name: name)
    }

    /// Softmax across channels.
    package func softmax(_ name: String = "softmax") -> Value {
        builder.add(.softmax, [self], channels: channels, name: name)
    }

    /// Average pool that excludes padding from the divisor.
    package func averagePool(_ kernel: Int, stride: Int, padding: Int, name: String = "avg_pool") -> Value {
        builder.add(.averagePool(kernel: kernel, stride: stride, padding: padding), [self], channels: channels,
                    name: name)
    }

    /// `activation(self + scale · branch)`.
    package func residual(_ branch: Value, scale: Float, activation: Activation) -> Value {
        precondition(branch.channels == channels, "residual branch has \(branch.channels) channels, not \(channels)")
        return builder.add(.residual(scale: scale, activation: activation), [self, branch], channels: channels,
                           name: "residual")
    }

    package func globalAveragePool() -> Value {
        builder.add(.globalAveragePool, [self], channels: channels, name: "global_pool")
    }

    package func dropout(_ rate: Float) -> Value {
        builder.add(.dropout(rate: rate), [self], channels: channels, name: "dropout")
    }

    package func linear(_ name: String, _ outFeatures: Int, bias: Bool = true) -> Value {
        builder.add(.linear(inFeatures: channels, outFeatures: outFeatures, weight: builder.qualified("\(name).weight"),
                            bias: bias ? builder.qualified("\(name).bias") : nil),
                    [self], channels: outFeatures, name: name)
    }

    package func batchNorm(_ name: String, epsilon: Float = 1e-3) -> Value {
        builder.add(.batchNorm(prefix: builder.qualified(name), epsilon: epsilon), [self], channels: channels,
                    name: name)
    }

    package func l2Normalize() -> Value { builder.add(.l2Normalize, [self], channels: channels, name: "l2_normalize") }
}

/// Channel concatenation, in argument order.
package func concat(_ values: Value...) -> Value { concat(values) }

package func concat(_ values: [Value]) -> Value {
    precondition(!values.isEmpty)
    return values[0].builder.add(.concat, values, channels: values.reduce(0) { $0 + $1.channels }, name: "concat")
}
