import ArgumentParser
import Foundation
import Inception
import InceptionIO

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: """
            Run the network on an (N, 3, H, W) float32 .npy and write its (N, classes) logits — or another output — as \
            .npy.
            """)

    @OptionGroup var model: ModelOption

    @Option(help: """
        Weights: safetensors or a PyTorch .pt/.pth/.bin (the network is the one the file names, if it does).
        """)
    var weights: String

    @Option(help: "Input .npy, float32 (N, 3, H, W).")
    var input: String

    @Option(help: "Output .npy, float32 (N, classes).")
    var output: String

    @Option(help: """
        Which output to write: logits, features (pooled, before the classifier) or embedding (face model). Default: \
        logits, or the embedding for the face model.
        """)
    var result: String?

    @Flag(help: "Run inputs that hold NaN or infinities (refused by default), and write outputs that do.")
    var allowNonfinite = false

    @Flag(help: "Print what was written as JSON.")
    var json = false

    @OptionGroup var precision: PrecisionOption

    @OptionGroup var threads: ThreadsOption

    func run() throws {
        try reportingErrors {
            try precision.check()
            let url = URL(fileURLWithPath: weights)
            let name = try model.model(for: url)
            let net = try InceptionModel(name, weights: url, precision: precision.precision)
            let (shape, values) = try NPY.read(contentsOf: URL(fileURLWithPath: input))
            let logits = try net(nchw: Tensor(shape: shape, scalars: values), output: result, threads: threads.threads,
                                 allowNonFinite: allowNonfinite)
            try NPY.write(shape: logits.shape, values: logits.scalars, to: URL(fileURLWithPath: output))
            if json {
                try printJSON(["model": name.rawValue, "output": output, "shape": logits.shape,
                               "result": result ?? net.primaryOutput])
            }
        }
    }
}
