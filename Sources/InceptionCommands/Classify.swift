import ArgumentParser
import Foundation
import Inception
import InceptionIO

struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Label images: the top classes and their probabilities.",
        discussion: """
            An image that cannot be read is reported on standard error (and in the JSON) and the others are still \
            classified; the exit status is then 1. --crops scores each image by a multi-crop protocol and repeated \
            --weights by an ensemble, as `inception eval` does.
            """)

    @OptionGroup var members: MembersOption

    @OptionGroup var precision: PrecisionOption

    @Option(help: "Views per image: 1 (centre crop), 10, 12 or 144 (GoogLeNet's protocol); probabilities averaged.")
    var crops: CropProtocol = .single

    @Option(help: "How each member's views combine: probabilities (the mean of their softmax) or logits.")
    var average: CropAverage = .probabilities

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
            let ensemble = try members.load(precision)
            for net in ensemble.members {
                try net.checkMemory(batch: min(input.batch, input.images.count * crops.rawValue), size: net.inputSize)
            }
            var results: [[String: Any]] = [], failed = 0
            // Images per step: a pass of --batch views, or one image's views when it has more.
            for paths in input.images.chunked(max(1, input.batch / crops.rawValue)) {
                let (images, problems) = input.prepare(paths) { ensemble.views([$0], crops: crops)[0] }
                failed += problems.count
                if json { results += problems.map { ["image": $0.path, "error": $0.reason] } }
                if images.isEmpty { continue }
                let probabilities = try ensemble.probabilities(views: images.map(\.pixels), average: average,
                                                               batch: input.batch, threads: input.threads.threads)
                let predictions = ensemble.predictions(probabilities, top: top)
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
