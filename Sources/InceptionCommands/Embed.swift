import ArgumentParser
import Foundation
import Inception
import InceptionIO

struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: """
            Write image embeddings as (N, D) float32 .npy: the face model's L2-normalised embedding, or the pooled \
            features before the classifier.
            """)

    @OptionGroup var weights: WeightsOption

    @OptionGroup var precision: PrecisionOption

    @Option(help: "Output .npy.")
    var output: String

    @Flag(help: "Print what was written as JSON.")
    var json = false

    @OptionGroup var input: ImageBatches

    func validate() throws {
        try FlagRule.output(output, notAmong: input.images + [weights.weights].compactMap { $0 }, json: json)
    }

    func run() throws {
        try reportingErrors {
            try input.checkFiles()
            let net = try weights.load(precision)
            try net.checkMemory(batch: min(input.batch, input.images.count), size: net.inputSize)
            let shape = [input.images.count, net.width(of: net.embeddingOutput)!]
            let writer = try NPY.Writer(shape: shape, to: output)
            for paths in input.batches {
                let prepared = try paths.map { net.prepare(try decode($0)) }
                try writer.append(try net.embed(prepared: prepared, threads: input.threads.threads).scalars)
            }
            try writer.finish()
            if json {
                try printJSON(["model": net.name.rawValue, "output": output, "shape": shape,
                               "result": net.embeddingOutput.rawValue])
            }
        }
    }
}
