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
            let job = try BatchJob.fromEnvironment()
            let (net, writer) = try job.together("loading") {
                try input.checkFiles()
                let net = try weights.load(precision)
                try net.checkMemory(batch: min(input.batch, input.images.count), size: net.inputSize)
                let shape = [input.images.count, net.width(of: net.embeddingOutput)!]
                return (net, try job.writer(shape: shape, to: output))
            }
            try job.run(count: input.images.count, step: input.batch) { inputs in
                guard !inputs.isEmpty else { return [] }
                let prepared = try inputs.map { net.prepare(try decode(input.images[$0])) }
                return BatchRecords.bytes(try net.embed(prepared: prepared, threads: input.threads.threads).scalars)
            } collect: { inputs, bytes in
                try writer!.put(BatchRecords.floats(bytes), atRow: inputs.lowerBound)
            }
            try writer?.finish()
            if json && job.isRoot {
                try printJSON(["model": net.name.rawValue, "output": output, "shape": writer!.shape,
                               "result": net.embeddingOutput.rawValue])
            }
        }
    }
}
