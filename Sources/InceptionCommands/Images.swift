import ArgumentParser
import Foundation
import Inception
import InceptionIO

/// `--model` and `--weights`; without `--weights`, the released weights from the Hub (cached).
struct WeightsOption: ParsableArguments {
    @OptionGroup var network: ModelOption

    @Option(help: """
        Weights: safetensors or a PyTorch checkpoint (.pt, .pth, .bin), in timm's, facenet-pytorch's or \
        pretrainedmodels' key names. Default: the released weights from the Hugging Face Hub (HF_ENDPOINT, \
        HF_HUB_CACHE, HF_HUB_OFFLINE honoured).
        """)
    var weights: String?

    var model: ModelName { network.model }

    /// The network `--model` names, else the one the weights file's metadata names (a checkpoint of `inception
    /// train` or `inception init`), else Inception-v4; and where its weights come from.
    func source() throws -> (name: ModelName, source: WeightsSource) {
        guard let weights else { return (model, .released(.withProgressBar())) }
        let url = URL(fileURLWithPath: weights)
        return (try network.model(for: url), .file(url))
    }

    /// The model, its convolutions in `precision`'s arithmetic (refused first if this CPU cannot run it).
    func load(_ precision: PrecisionOption) throws -> InceptionModel {
        try precision.check()
        let (name, source) = try source()
        return try InceptionModel(name, from: source, precision: precision.precision)
    }
}

/// The images a command runs on, how many per forward pass, and on how many threads.
struct ImageBatches: ParsableArguments {
    @Option(help: "Images per forward pass.")
    var batch: Int = 8

    @OptionGroup var threads: ThreadsOption

    @Argument(help: "JPEG or PNG images.")
    var images: [String]

    /// The images in forward-pass-sized runs, in order.
    var batches: [[String]] { images.chunked(max(1, batch)) }

    func validate() throws { try FlagRule.batch(batch) }

    /// Refuses, before any weights are fetched, a list in which no image is a readable regular file (one that is
    /// missing among others is reported when its turn comes).
    func checkFiles() throws {
        var first: CLIError?
        for path in images {
            do { _ = try FileInput.regularFileSize(URL(fileURLWithPath: path)); return } catch {
                first = first ?? CLIError("cannot read image \(path): \(error)")
            }
        }
        if let first { throw first }
    }

    /// The images of `paths` that decode, each through `net`'s preprocessing as soon as it is decoded (a batch then
    /// holds tensors at the network's input size, never the photos), and for each that does not, its one-line
    /// reason (also written to standard error).
    func prepare(_ paths: [String], for net: InceptionModel)
        -> (images: [(path: String, pixels: [Float])], problems: [(path: String, reason: String)])
    {
        var images: [(path: String, pixels: [Float])] = [], problems: [(path: String, reason: String)] = []
        for path in paths {
            do {
                images.append((path, net.prepare(try decode(path))))
            } catch {
                problems.append((path, "\(error)"))
                FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            }
        }
        return (images, problems)
    }
}

extension Array {
    /// Consecutive runs of at most `size` elements.
    func chunked(_ size: Int) -> [[Element]] {
        stride(from: 0, to: count, by: size).map { Array(self[$0..<Swift.min(count, $0 + size)]) }
    }
}

func decode(_ path: String) throws -> RGBImage { try RGBImage(contentsOf: URL(fileURLWithPath: path)) }

struct Preprocess: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: """
            Write the tensor the model sees for each image: (N, 3, H, W) float32 .npy, after the model's own \
            preprocessing.
            """)

    @OptionGroup var network: ModelOption

    @Option(help: "Square input size (default: the model's own).")
    var inputSize: Int?

    @Option(help: "Output .npy.")
    var output: String

    @Flag(help: "Print what was written as JSON.")
    var json = false

    @Argument(help: "JPEG or PNG images.")
    var images: [String]

    func validate() throws {
        try FlagRule.inputSize(inputSize, for: network.model)
        try FlagRule.output(output, notAmong: images, json: json)
    }

    /// Each image is decoded, preprocessed and written before the next is read.
    func run() throws {
        try reportingErrors {
            let preprocessing = network.model.preprocessing
            let size = inputSize ?? preprocessing.inputSize
            let shape = [images.count, 3, size, size]
            let writer = try NPY.Writer(shape: shape, to: output)
            for path in images {
                let hwc = preprocessing.apply(try decode(path), inputSize: size)
                try writer.append(Tensor(shape: [1, size, size, 3], scalars: hwc).nhwcToNCHW().scalars)
            }
            try writer.finish()
            if json { try printJSON(["model": network.model.rawValue, "output": output, "shape": shape]) }
        }
    }
}

struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Label images: the top classes and their probabilities.",
        discussion: """
            An image that cannot be read is reported on standard error (and in the JSON) and the others are still \
            classified; the exit status is then 1.
            """)

    @OptionGroup var weights: WeightsOption

    @OptionGroup var precision: PrecisionOption

    @Option(help: "How many classes to show per image (at most the model's classes).")
    var top: Int = 5

    @Flag(help: "Print JSON.")
    var json = false

    @OptionGroup var input: ImageBatches

    func validate() throws {
        guard top >= 1 else { throw FlagError("--top must be at least 1") }
    }

    func run() throws {
        try reportingErrors {
            try input.checkFiles()
            let net = try weights.load(precision)
            try net.checkMemory(batch: min(input.batch, input.images.count), size: net.inputSize)
            var results: [[String: Any]] = [], failed = 0
            for paths in input.batches {
                let (images, problems) = input.prepare(paths, for: net)
                failed += problems.count
                if json { results += problems.map { ["image": $0.path, "error": $0.reason] } }
                if images.isEmpty { continue }
                let predictions = try net.classify(prepared: images.map(\.pixels), top: top,
                                                   threads: input.threads.threads)
                for ((path, _), top) in zip(images, predictions) {
                    if json {
                        results.append(["image": path, "predictions": top.map {
                            ["index": $0.index, "label": $0.label, "wordnet_id": $0.wordNetID ?? NSNull(),
                             "probability": Double($0.probability)] as [String: Any]
                        }])
                    } else {
                        print(path)
                        for (rank, p) in top.enumerated() {
                            print(String(format: "  %d. %6.2f%%  %@  %@", rank + 1, 100 * p.probability,
                                         p.wordNetID ?? "-", p.label))
                        }
                    }
                }
            }
            if json { try printJSON(results) }
            // The image's own line says it all for one image; for several, a count closes the run.
            if failed > 0 && input.images.count == 1 { throw ExitCode(1) }
            if failed > 0 { throw CLIError("\(failed) of \(input.images.count) images could not be read") }
        }
    }
}

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
                               "result": net.embeddingOutput])
            }
        }
    }
}
