import ArgumentParser
import Foundation
import Inception
import InceptionEngine

struct Summary: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Each stage's output shape, parameters and multiply-accumulates, and the totals.")

    @OptionGroup var model: ModelOption

    @Option(help: "Square input size (default: the model's own).")
    var inputSize: Int?

    @Option(help: "Number of classes of the classifier (default: the model's own).")
    var classes: Int?

    @Flag(help: "List each convolution's register tile (measured on this CPU, or the built-in one).")
    var tiles = false

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        try FlagRule.inputSize(inputSize, for: model.model)
        try FlagRule.count(classes, "--classes", in: FlagRule.classes)
    }

    func run() throws {
        try reportingErrors {
            let name = model.model
            let graph = name.graph(classes: classes)
            let size = inputSize ?? name.spec.inputSize
            let shapes = try graph.shapes(n: 1, h: size, w: size)
            let macs = graph.macs(shapes: shapes)
            var stages: [(name: String, shape: Shape, parameters: Int, macs: Int)] = []
            for i in graph.nodes.indices.dropFirst() {
                let params = graph.parameters(of: i).filter { !$0.isBuffer }.reduce(0) { $0 + $1.count }
                let stage = graph.nodes[i].stage
                if stages.last?.name == stage {
                    stages[stages.count - 1].shape = shapes[i]
                    stages[stages.count - 1].parameters += params
                    stages[stages.count - 1].macs += macs[i]
                } else {
                    stages.append((stage, shapes[i], params, macs[i]))
                }
            }
            let totalMACs = macs.reduce(0, +)
            let layerTiles = InceptionModel(name, randomSeed: 1, classes: classes,
                                            tiles: TileTuning(known: TileTuning.forThisCPU.known, measure: false))
                .compiled.tiles
            if json {
                try printJSON([
                    "model": name.rawValue, "input_size": size, "parameters": graph.parameterCount, "macs": totalMACs,
                    "minimum_input_size": graph.minimumInputSize, "isa": Kernels.current.name,
                    "int8_route": ReducedKernels.current.int8Name,
                    "bf16_route": ReducedKernels.current.bf16Name ?? NSNull(),
                    "amx": ReducedKernels.current.amx.map { "\($0)" } ?? NSNull(),
                    "tiles": layerTiles.map { ["layer": $0.key, "tile": "\($0.tile)", "measured": $0.measured] },
                    "stages": stages.map { ["name": $0.name, "output_shape": [$0.shape.h, $0.shape.w, $0.shape.c],
                                            "parameters": $0.parameters, "macs": $0.macs] as [String: Any] },
                ])
                return
            }
            let minimum = graph.minimumInputSize
            print("\(name.rawValue) at \(size)×\(size)×3 (minimum input \(minimum)×\(minimum))")
            let header = "stage".padding(toLength: 26, withPad: " ", startingAt: 0)
                + "output (H×W×C)".leftPadded(18) + "parameters".leftPadded(14) + "MACs".leftPadded(17)
            print(header)
            for s in stages {
                print(s.name.padding(toLength: 26, withPad: " ", startingAt: 0)
                      + "\(s.shape.h)×\(s.shape.w)×\(s.shape.c)".leftPadded(18)
                      + s.parameters.grouped.leftPadded(14) + s.macs.grouped.leftPadded(17))
            }
            print("total".padding(toLength: 44, withPad: " ", startingAt: 0)
                  + graph.parameterCount.grouped.leftPadded(14) + totalMACs.grouped.leftPadded(17))
            let levels = Kernels.supported.map(\.name).joined(separator: ", ")
            print("kernels: \(Kernels.current.name) (of \(levels) on this CPU)")
            let reduced = ReducedKernels.current
            let bf16 = reduced.bf16Name ?? "nothing on this CPU"
            let emulated = reduced.amx == .emulator ? " (AMX emulated: INCEPTION_AMX=emulate)" : ""
            print("reduced precision: int8 by \(reduced.int8Name), bf16 by \(bf16)\(emulated)")
            printTiles(layerTiles)
            if case let .measured(table) = ConvolutionAlgorithms.forThisCPU {
                let layers = table.choices.count
                print("algorithm choices: measured on this CPU for \(layers) layers (\(AlgorithmTable.url.path))")
            } else {
                print("algorithm choices: the built-in rule (no table measured on this CPU: bench kernels --save)")
            }
        }
    }
}

extension Summary {
    /// How many layers run at each register tile and how many of those were measured; each layer with `--tiles`.
    func printTiles(_ layers: [LayerTile]) {
        let counts = Dictionary(grouping: layers, by: \.tile).sorted { $0.value.count > $1.value.count }
            .map { "\($0.key) for \($0.value.count)" }.joined(separator: ", ")
        let measured = layers.filter(\.measured).count
        let source = !TileTuning.enabled ? "the built-in tile (INCEPTION_TUNE=0)"
            : measured == layers.count ? "all measured on this CPU"
            : "\(measured) measured on this CPU, the rest measured when the model first loads"
        print("register tiles: \(counts) layers (\(source))")
        guard tiles else { return }
        for layer in layers {
            print("  \(layer.key.padding(toLength: 60, withPad: " ", startingAt: 0)) \(layer.tile)"
                  + (layer.measured ? " (measured)" : " (built in)"))
        }
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}

extension Int {
    /// 12,253,974,624
    var grouped: String {
        let digits = String(self.magnitude)
        var out = ""
        for (i, ch) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out += "," }
            out.append(ch)
        }
        return (self < 0 ? "-" : "") + out
    }
}
