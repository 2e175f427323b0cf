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

    @Option(help: "Images per forward pass: the input is read, run and written this many at a time.")
    var batch: Int = 8

    @OptionGroup var precision: PrecisionOption

    @OptionGroup var threads: ThreadsOption

    func validate() throws {
        try FlagRule.batch(batch)
        try FlagRule.output(output, notAmong: [weights, input], json: json)
    }

    /// The input is read a run of `--batch` images at a time (`pread`, so that a file shrunk meanwhile is one line,
    /// not SIGBUS); each run is converted, run and written before the next, so memory holds one batch whatever the
    /// file's size. Under `mpirun`, each rank runs its shard of the rows (`BatchJob`) and rank 0 writes them.
    func run() throws {
        try reportingErrors {
            let job = try BatchJob.fromEnvironment()
            let (net, reader, writer) = try job.together("loading") { try load(job) }
            try job.run(count: reader.shape[0], step: batch) { rows in
                guard !rows.isEmpty else { return [] }
                let nchw = Tensor(shape: [rows.count] + reader.shape.dropFirst(), scalars: try reader.values(rows))
                do {
                    return BatchRecords.bytes(try net(nchw: nchw, output: result.map { OutputName($0) },
                                                      threads: threads.threads, allowNonFinite: allowNonfinite).scalars)
                } catch let InputError.nonFinite(count, at) {
                    // Where in the whole file, not in this batch.
                    throw InputError.nonFinite(count: count, first: at + rows.lowerBound * reader.rowCount)
                }
            } collect: { rows, bytes in
                try writer!.put(BatchRecords.floats(bytes), atRow: rows.lowerBound)
            }
            try writer?.finish()
            if json && job.isRoot {
                try printJSON(["model": net.name.rawValue, "output": output, "shape": writer!.shape,
                               "result": result ?? net.primaryOutput.rawValue])
            }
        }
    }

    /// The network and the input, checked against each other and the memory, and the output (rank 0's), of one row
    /// of the requested output's width per image.
    private func load(_ job: BatchJob) throws -> (InceptionModel, NPY.Reader, NPY.Writer?) {
        let route = try precision.route()
        let url = URL(fileURLWithPath: weights)
        let name = try model.model(for: url)
        let net = try InceptionModel(try ModelWeights(name, file: url), route: route)
        let reader = try NPY.Reader(contentsOf: URL(fileURLWithPath: input))
        let images = reader.shape.first ?? 0
        guard reader.shape.count == 4 else { throw InputError.wrongRank(reader.shape) }
        guard images > 0 else { throw CLIError("\(input) holds no images (its shape is \(reader.shape))") }
        guard reader.shape[1] == net.graph.inputChannels else {
            throw InputError.wrongChannels(expected: net.graph.inputChannels, shape: reader.shape)
        }
        try net.checkMemory(batch: min(batch, images), height: reader.shape[2], width: reader.shape[3])
        let wanted = result.map { OutputName($0) } ?? net.primaryOutput
        guard let width = net.width(of: wanted) else {
            throw InputError.unknownOutput(wanted, model: net.name.rawValue, available: net.outputNames)
        }
        return (net, reader, try job.writer(shape: [images, width], to: output))
    }
}
