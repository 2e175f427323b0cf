import ArgumentParser
import Foundation
import Inception
import InceptionIO

extension CAMMethod: ExpressibleByArgument {}

struct Explain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Where the network looked: class activation maps drawn over the photos.",
        discussion: """
            Each photo is explained for its top class (or each --class, or its --top N classes): the map of --method \
            at --layer (default: the last block before pooling; `inception summary` lists the layers, and the \
            checkpoint's module names work too) is drawn over the part of the photo the network saw, with the class \
            and its probability written in, as a PNG. One overlay goes to --output itself; several go into the \
            folder --output names, as PHOTO.CLASS.png. --json prints each map's numbers (at the layer's resolution \
            and at the network input's). The maps equal pytorch-grad-cam's. For two faces, see `compare --explain`.
            """)

    @OptionGroup var weights: WeightsOption

    @OptionGroup var precision: PrecisionOption

    @Option(name: .customLong("class"), help: "A class to explain (repeatable; default: each photo's top class).")
    var classes: [Int] = []

    @Option(help: "Explain each photo's N most probable classes.")
    var top: Int?

    @Option(help: "The map's method, as pytorch-grad-cam names it.")
    var method: CAMMethod = .gradCAM

    @Option(help: "The layer to explain (default: the last block before pooling).")
    var layer: String?

    @Option(help: "The overlay PNG, or a folder for several overlays.")
    var output: String?

    @Flag(help: "Print JSON: each map's numbers, its class and probability, and the part of the photo seen.")
    var json = false

    @OptionGroup var input: ImageBatches

    func validate() throws {
        guard output != nil || json else { throw CLIError("give --output for the overlays, or --json, or both") }
        guard classes.isEmpty || top == nil else { throw CLIError("--class and --top exclude each other") }
        try FlagRule.count(top, "--top", in: 1...1000)
        for k in classes where k < 0 { throw CLIError("--class must be a class index of 0 or more, not \(k)") }
        if let output { try FlagRule.output(output, notAmong: input.images, json: json) }
    }

    /// What one overlay shows: a photo and the target it is explained for.
    struct Job {
        let photo: Int
        let target: ExplanationTarget
    }

    func run() throws {
        try reportingErrors {
            try input.checkFiles()
            let net = try weights.load(precision, explainable: layer == nil ? .lastBlock : .everyLayer)
            guard let classCount = net.classes else {
                throw CLIError("\(net.name) has no classifier to explain: `inception compare --explain` shows which "
                               + "parts of two faces made them match")
            }
            if let bad = classes.first(where: { $0 >= classCount }) {
                throw CLIError("--class \(bad) is out of range: the model has \(classCount) classes")
            }
            try net.checkMemory(batch: min(input.batch, input.images.count), size: net.inputSize)
            var records: [[String: Any]] = [], written: [String] = [], failed = 0
            let overlays = input.images.count * max(classes.count, top ?? 1)
            let names = Self.overlayNames(input.images)
            for chunk in input.batches {
                let (photos, problems) = input.prepare(chunk) { $0 }
                failed += problems.count
                if json { records += problems.map { ["image": $0.path, "error": $0.reason] } }
                guard !photos.isEmpty else { continue }
                for (photo, explanation) in try explain(photos.map(\.pixels), net) {
                    let path = photos[photo].path
                    var record = explanation.record(model: net, photoWidth: photos[photo].pixels.width,
                                                    photoHeight: photos[photo].pixels.height)
                    record["image"] = path
                    if let output {
                        let file = overlays == 1 ? output : URL(fileURLWithPath: output)
                            .appendingPathComponent("\(names[path]!).\(explanation.classIndex!).png").path
                        if overlays > 1 { try FileManager.default.createDirectory(
                            atPath: output, withIntermediateDirectories: true) }
                        try FileOutput.write(try explanation.overlayPNG(on: photos[photo].pixels, model: net),
                                             to: file)
                        record["overlay"] = file
                        written.append(file)
                    }
                    records.append(record)
                    if !json { print("\(path): \(explanation.caption(model: net))"
                                     + (record["overlay"].map { " → \($0)" } ?? "")) }
                }
            }
            if json { try printJSON(records) }
            if failed > 0 && input.images.count == 1 { throw ExitCode(1) }
            if failed > 0 { throw CLIError("\(failed) of \(input.images.count) images could not be read") }
        }
    }

    /// Every overlay of a batch of photos, in order: for each photo its targets (`--class`, `--top`, or the top class).
    func explain(_ photos: [RGBImage], _ net: InceptionModel) throws -> [(Int, Explanation)] {
        let prepared = photos.map(net.prepare)
        var jobs: [Job] = []
        if let top {
            let ranked = try net.classify(prepared: prepared, top: top, threads: input.threads.threads)
            for (i, predictions) in ranked.enumerated() {
                jobs += predictions.map { Job(photo: i, target: .classIndex($0.index)) }
            }
        } else {
            for i in photos.indices {
                jobs += classes.isEmpty ? [Job(photo: i, target: .topClass)]
                    : classes.map { Job(photo: i, target: .classIndex($0)) }
            }
        }
        let explanations = try net.explain(prepared: jobs.map { prepared[$0.photo] }, targets: jobs.map(\.target),
                                           method: method, layer: layer, threads: input.threads.threads)
        return zip(jobs, explanations).map { ($0.photo, $1) }
    }

    /// Each photo's file-name stem for its overlays; photos that share a stem get their position in front.
    static func overlayNames(_ paths: [String]) -> [String: String] {
        let stems = paths.map { URL(fileURLWithPath: $0).deletingPathExtension().lastPathComponent }
        let counts = Dictionary(stems.map { ($0, 1) }, uniquingKeysWith: +)
        var names: [String: String] = [:]
        for (i, (path, stem)) in zip(paths, stems).enumerated() {
            names[path] = counts[stem]! > 1 ? "\(i + 1)-\(stem)" : stem
        }
        return names
    }
}
