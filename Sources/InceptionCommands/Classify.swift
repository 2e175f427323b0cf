import ArgumentParser
import Foundation
import Inception
import InceptionIO

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
