import ArgumentParser
import Foundation
import Inception
import InceptionIO
import InceptionTraining

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Write a freshly initialised checkpoint (timm's pretrained=False), in the released key names.",
        discussion: """
            He-uniform convolutions, PyTorch's default for the classifier, BatchNorm at γ = 1, β = 0 with running \
            mean 0 and variance 1 — the initialisation `inception train` starts from. The file loads wherever \
            --weights is taken, and strictly in timm.
            """)

    @OptionGroup var network: ModelOption

    @Option(help: "Classes of the classifier (default: the network's own).")
    var classes: Int?

    @Option(help: "Seed of the initialisation.")
    var seed: UInt64 = 0

    @Option(help: "The safetensors file to write.")
    var output: String

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        guard classes.map({ $0 >= 1 && $0 <= 1_000_000 }) ?? true else {
            throw ValidationError("--classes must be in 1…1000000")
        }
    }

    func run() throws {
        try reportingErrors {
            let name = network.model
            let graph = name.graph(classes: classes ?? name.defaultClasses)
            let values = ModelName.initialValues(graph, seed: seed)
            let metadata = CheckpointMetadata(model: name, inputSize: name.defaultInputSize)
            try SafeTensorsFile.write(name.checkpointTensors(graph, values), metadata: metadata.strings,
                                      to: URL(fileURLWithPath: output))
            if json {
                try printJSON(["model": name.rawValue, "output": output, "parameters": graph.parameterCount,
                               "classes": graph.outputs["logits"].map { graph.nodes[$0].channels } ?? NSNull(),
                               "seed": seed])
            } else {
                print("\(output): \(name.rawValue), \(graph.parameterCount.grouped) parameters, seed \(seed)")
            }
        }
    }
}
