import ArgumentParser
import Foundation
import Inception
import InceptionIO

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantise a checkpoint to int8 (post-training, static), calibrating on images.",
        discussion: """
            Weights become symmetric int8 per output channel; each convolution's input gets a u8 scale and zero \
            point from the smallest and largest value it takes over the calibration images (min-max). The first \
            convolution and the linear layers stay fp32. The output is safetensors (the fp32 checkpoint's keys; I8 \
            weights with `weight_scale`, `input_scale` and `input_zero_point` beside them) that `--precision int8` \
            loads on predict, classify, embed, eval, bench and serve.
            """)

    @OptionGroup var weights: WeightsOption

    @Option(help: "A folder of calibration images (JPEG or PNG), directly or in sub-folders.")
    var calibration: String

    @Option(help: "The quantised checkpoint to write (.safetensors).")
    var output: String

    @Option(help: "Calibration images to use at most (spread evenly over the folder's images in sorted path order).")
    var limit: Int = 500

    @Option(help: "Images per forward pass.")
    var batch: Int = 8

    @OptionGroup var threads: ThreadsOption

    @Flag(help: "Print what was written as JSON.")
    var json = false

    func validate() throws {
        try FlagRule.batch(batch)
        try FlagRule.count(limit, "--limit", in: 1...Int.max)
        try FlagRule.output(output, notAmong: [weights.weights].compactMap { $0 }, json: json)
    }

    func run() throws {
        try reportingErrors {
            let paths = try Self.images(in: calibration, limit: limit)
            // Before any work: --output is none of the folder's images (those left out by --limit included).
            try FlagRule.output(output, notAmong: try Self.images(in: calibration, limit: .max))
            let (name, source) = try weights.source()
            let loaded = try ModelWeights(name, from: source)
            guard loaded.int8 == nil else { throw CLIError("\(weights.weights ?? name.rawValue) is already int8") }
            let model = try InceptionModel(loaded)
            try model.checkMemory(batch: min(batch, paths.count), size: model.inputSize)
            var ranges = Quantization.Ranges(), skipped = 0
            for chunk in paths.chunked(batch) {
                var pixels: [Float] = []
                for path in chunk {
                    do {
                        let image = try RGBImage(contentsOf: URL(fileURLWithPath: path))
                        pixels += name.spec.preprocessing.apply(image, inputSize: model.inputSize)
                    } catch {
                        FileHandle.standardError.write(Data("warning: skipped \(path): \(error)\n".utf8))
                        skipped += 1
                    }
                }
                let n = pixels.count / (3 * model.inputSize * model.inputSize)
                guard n > 0 else { continue }
                let batch = Tensor(shape: [n, model.inputSize, model.inputSize, 3], scalars: pixels)
                try Quantization.calibrate(model, batch: batch, into: &ranges, threads: threads.threads)
            }
            guard ranges.images > 0 else { throw CLIError("no calibration image in \(calibration) could be decoded") }
            let (tensors, metadata) = try Quantization.checkpoint(loaded, ranges: ranges)
            try SafeTensorsFile.write(tensors, metadata: metadata, to: URL(fileURLWithPath: output))
            let layers = Quantization.layers(loaded.graph).count
            let bytes = tensors.reduce(0) { $0 + $1.bytes.count }
            if json {
                try printJSON(["model": name.rawValue, "output": output, "quantized_convolutions": layers,
                               "calibration_images": ranges.images, "skipped": skipped, "bytes": bytes])
            } else {
                print("\(output): \(name.rawValue) int8, \(layers) convolutions quantised (the first stays fp32), "
                      + "calibrated on \(ranges.images) images (min-max), \(bytes / 1_000_000) MB")
            }
        }
    }

    /// The images under `root`, at any depth, in sorted path order; at most `limit`, spread evenly over them (so a
    /// folder of class sub-folders calibrates on every class).
    static func images(in root: String, limit: Int) throws -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CLIError("--calibration \(root) is not a folder")
        }
        let url = URL(fileURLWithPath: root)
        let enumerator = FileManager.default.enumerator(at: url, includingPropertiesForKeys: [.isRegularFileKey],
                                                        options: [.skipsHiddenFiles])
        var paths: [String] = []
        while let file = enumerator?.nextObject() as? URL {
            guard ["jpg", "jpeg", "png"].contains(file.pathExtension.lowercased()),
                  (try? file.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true else { continue }
            paths.append(file.path)
        }
        guard !paths.isEmpty else { throw CLIError("--calibration \(root) holds no JPEG or PNG image") }
        paths.sort()
        guard paths.count > limit else { return paths }
        return (0..<limit).map { paths[$0 * paths.count / limit] }
    }
}
