import ArgumentParser
import Foundation
import Inception
import InceptionEngine
import InceptionIO

struct Preprocess: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: """
            Write the tensor the model sees for each image: (N, 3, H, W) float32 .npy, after the model's own \
            preprocessing; with --crops, each image's views in turn (N × crops rows, in the order docs/evaluation.md \
            gives).
            """)

    @OptionGroup var network: ModelOption

    @Option(help: "Square input size (default: the model's own).")
    var inputSize: Int?

    @Option(help: "Views per image: 1 (the centre crop), 10, 12 or 144, as `inception eval --crops` scores them.")
    var crops: CropProtocol = .single

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

    /// Each image is decoded, preprocessed and written before the next is read, one view at a time.
    func run() throws {
        try reportingErrors {
            let preprocessing = network.model.spec.preprocessing
            let size = inputSize ?? preprocessing.inputSize
            let shape = [images.count * crops.rawValue, 3, size, size]
            let writer = try NPY.Writer(shape: shape, to: output)
            // One view at a time: memory for one view (and the square it is scaled from), whatever --crops.
            let view = 4 * 3 * size * size
            try MemoryLimit.check(3 * view, for: "a view of \(size)×\(size)")
            for path in images {
                try preprocessing.forEachView(try decode(path), crops: crops, inputSize: size) { view in
                    let hwc = preprocessing.normalized(view.image, mirrored: view.mirrored)
                    try writer.append(Tensor(shape: [1, size, size, 3], scalars: hwc).nhwcToNCHW().scalars)
                }
            }
            try writer.finish()
            if json { try printJSON(["model": network.model.rawValue, "output": output, "shape": shape]) }
        }
    }
}
