import ArgumentParser
import Foundation
import Inception
import InceptionIO

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a checkpoint (PyTorch .pt/.pth/.bin, or safetensors) to safetensors, checked strictly.",
        discussion: """
            The PyTorch file is read without Python and without running anything in it: only tensor and parameter \\
            rebuilds and OrderedDict are allowed, anything else is refused by name. State dicts wrapped as \\
            {"state_dict": …} or {"model": …} and DataParallel's "module." prefixes are handled. The result holds \\
            every floating-point tensor as float32 under the same key names, after the same strict check as \\
            --weights (every parameter of the network, each with its shape, and nothing else).
            """)

    @OptionGroup var network: ModelOption

    @Argument(help: "The checkpoint to read.")
    var input: String

    @Argument(help: "The safetensors file to write.")
    var output: String

    @Flag(help: "Print what was written as JSON.")
    var json = false

    func validate() throws {
        try FlagRule.output(output, notAmong: [input], json: json)
        if ["pt", "pth", "bin"].contains(URL(fileURLWithPath: output).pathExtension.lowercased()) {
            throw CLIError("the output \(output) is named as a PyTorch checkpoint, but convert writes safetensors "
                            + "(are the two paths swapped? the checkpoint to read comes first)")
        }
    }

    func run() throws {
        try reportingErrors {
            let url = URL(fileURLWithPath: input)
            let name = try network.model(for: url)
            let file = name.inReleasedLayout(try openTensorFile(url))
            let shapes = file.shapes
            let classes = shapes[name.checkpointKey(name.spec.classifierWeight)]?.first
            try InceptionModel.verify(name.graph(classes: classes), name, file)
            var tensors: [(name: String, shape: [Int], values: [Float])] = []
            for key in shapes.keys.sorted() where !key.hasSuffix("num_batches_tracked") {
                tensors.append((key, shapes[key]!, try InceptionModel.finiteFloats(file, key)))
            }
            try SafeTensorsFile.write(tensors, metadata: CheckpointMetadata(model: name).strings,
                                      to: URL(fileURLWithPath: output))
            if json {
                try printJSON(["model": name.rawValue, "output": output, "tensors": tensors.count])
            } else {
                print("\(output): \(name.rawValue), \(tensors.count) tensors")
            }
        }
    }
}
