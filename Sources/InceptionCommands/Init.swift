import ArgumentParser
import Foundation
import Inception
import InceptionEngine
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
        try FlagRule.count(classes, "--classes", in: FlagRule.classes)
        try FlagRule.output(output, notAmong: [], json: json)
    }

    func run() throws {
        try reportingErrors {
            let name = network.model
            let graph = name.graph(classes: classes ?? name.spec.classes)
            // The values, and the file's bytes made from them.
            try MemoryLimit.check(8 * graph.parameterCount, for: "a checkpoint of \(graph.parameterCount.grouped) "
                                  + "parameters")
            let values = ModelName.initialValues(graph, seed: seed)
            let metadata = CheckpointMetadata(model: name, inputSize: name.spec.inputSize)
            try SafeTensorsFile.write(name.checkpointTensors(graph, values), metadata: metadata.strings,
                                      to: URL(fileURLWithPath: output))
            if json {
                try printJSON(["model": name.rawValue, "output": output, "parameters": graph.parameterCount,
                               "classes": graph.outputs[.logits].map { graph.nodes[$0].channels } ?? NSNull(),
                               "seed": seed])
            } else {
                print("\(output): \(name.rawValue), \(graph.parameterCount.grouped) parameters, seed \(seed)")
            }
        }
    }
}
