import ArgumentParser
import Foundation
import Inception
import InceptionIO

/// `--model` and `--weights`; without `--weights`, the released weights from the Hub (cached).
struct WeightsOption: ParsableArguments {
    @OptionGroup var network: ModelOption

    @Option(help: """
        Weights in safetensors (timm's or facenet-pytorch's key names). Default: the released weights from the \
        Hugging Face Hub (HF_ENDPOINT, HF_HUB_CACHE, HF_HUB_OFFLINE honoured).
        """)
    var weights: String?

    var model: ModelName { network.model }

    func load() throws -> InceptionModel {
        try InceptionModel(model, from: weights.map { .file(URL(fileURLWithPath: $0)) }
                           ?? .released(.withProgressBar()))
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

    @Argument(help: "JPEG or PNG images.")
    var images: [String]

    func run() throws {
        try reportingErrors {
            let batch = network.model.preprocessing.batch(try images.map(decode), inputSize: inputSize)
            let nchw = batch.nhwcToNCHW()
            try NPY.write(shape: nchw.shape, values: nchw.scalars, to: URL(fileURLWithPath: output))
        }
    }
}

struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Label images: the top classes and their probabilities.")

    @OptionGroup var weights: WeightsOption

    @Option(help: "How many classes to show per image.")
    var top: Int = 5

    @Flag(help: "Print JSON.")
    var json = false

    @OptionGroup var input: ImageBatches

    func run() throws {
        try reportingErrors {
            let net = try weights.load()
            var results: [[String: Any]] = []
            for paths in input.batches {
                let predictions = try net.classify(try paths.map(decode), top: top, threads: input.threads.threads)
                for (path, top) in zip(paths, predictions) {
                    if json {
                        results.append(["image": path, "predictions": top.map {
                            ["index": $0.index, "label": $0.label, "wordnet_id": $0.wordNetID ?? NSNull(),
                             "probability": Double($0.probability)] as [String: Any]
                        }])
                    } else {
                        print(path)
                        for (rank, p) in top.enumerated() {
                            print(String(format: "  %d. %6.2f%%  %@  %@", rank + 1, 100 * p.probability, p.wordNetID
                                         ?? "-", p.label))
                        }
                    }
                }
            }
            if json { try printJSON(results) }
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

    @Option(help: "Output .npy.")
    var output: String

    @OptionGroup var input: ImageBatches

    func run() throws {
        try reportingErrors {
            let net = try weights.load()
            var rows: [Float] = [], dimension = 0
            for paths in input.batches {
                let e = try net.embed(try paths.map(decode), threads: input.threads.threads)
                dimension = e.shape[1]
                rows += e.scalars
            }
            try NPY.write(shape: [input.images.count, dimension], values: rows, to: URL(fileURLWithPath: output))
        }
    }
}
