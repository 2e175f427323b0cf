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
        let route = try precision.route()
        let (name, source) = try source()
        return try InceptionModel(try ModelWeights(name, from: source), route: route)
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
