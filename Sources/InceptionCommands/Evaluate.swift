import ArgumentParser
import Foundation
import Inception

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Top-1 and top-5 accuracy on an image folder (one sub-folder per class).",
        discussion: """
            Class folders are named as the checkpoint's classes (a run of `inception train` stores them, so the \
            folders it trained on evaluate as they are), or for an ImageNet classifier by WordNet id or class index. \
            --crops 10, 12 or 144 score each image by the paper's multi-crop protocols, its views' softmax \
            probabilities averaged; repeated --weights score an ensemble (docs/evaluation.md maps the paper's \
            tables to commands).
            """)

    @OptionGroup var members: MembersOption

    @OptionGroup var precision: PrecisionOption

    @Option(help: "Views per image: 1 (centre crop), 10, 12 or 144 (GoogLeNet's protocol).")
    var crops: CropProtocol = .single

    @Option(help: """
        How each member's views combine: probabilities (the mean of their softmax) or logits (the softmax of their \
        mean); an ensemble's members are then averaged.
        """)
    var average: CropAverage = .probabilities

    @Option(help: "Images (views, with --crops) per forward pass.")
    var batch: Int = 8

    @Option(help: "Evaluate only the first N images.")
    var limit: Int?

    @Flag(help: "Stop at the first image that cannot be decoded (default: report and skip it).")
    var stopOnError = false

    @Flag(help: "Print JSON: the totals and each image's label and top five.")
    var json = false

    @OptionGroup var threads: ThreadsOption

    @Argument(help: "The image folder.")
    var directory: String

    func validate() throws {
        try FlagRule.batch(batch)
        try FlagRule.count(limit, "--limit", in: 1...Int.max)
    }

    func run() throws {
        try reportingErrors {
            let ensemble = try members.load(precision)
            let net = ensemble.members[0]
            let data = try net.imageFolder(directory)
            for member in ensemble.members {
                try member.checkMemory(batch: min(batch, data.samples.count * crops.rawValue), size: member.inputSize)
            }
            let bar = ProgressBar(), started = Date()
            let result = try ensemble.evaluate(data, batch: batch, crops: crops, average: average,
                                               threads: threads.threads, stopOnError: stopOnError,
                                               limit: limit) { done, total in
                let rate = Double(done) / max(Date().timeIntervalSince(started), 1e-9)
                let left = ProgressBar.duration(Double(total - done) / max(rate, 1e-9))
                bar.show("eval", done, of: total, detail: String(format: "%d/%d %.1f img/s, %@ left", done, total,
                                                                 rate, left))
            }
            bar.finish()
            for skipped in result.skipped { FileHandle.standardError.write(Data("skipped \(skipped.reason)\n".utf8)) }
            guard result.images > 0 else {
                throw CLIError("no image in \(directory) could be evaluated (\(result.skipped.count) unreadable)")
            }
            let name = ensemble.members.map(\.name.rawValue).joined(separator: " + ")
            if json { return try printJSON(report(result, name: name, ensemble: ensemble)) }
            let views = crops == .single ? "" : ", \(crops.rawValue) crops"
            let format = "%@ on %d images%@: top-1 %.2f%%, top-5 %.2f%% (error %.2f%%, %.2f%%), %.2f images/s%@"
            print(String(format: format, name, result.images, views, 100 * result.top1Accuracy,
                         100 * result.top5Accuracy, 100 * result.top1Error, 100 * result.top5Error,
                         result.imagesPerSecond,
                         result.skipped.isEmpty ? "" : " (\(result.skipped.count) skipped)"))
        }
    }

    /// The JSON: totals, how they were scored, and each image.
    func report(_ result: Evaluation, name: String, ensemble: Ensemble) -> [String: Any] {
        ["model": name, "models": ensemble.members.map(\.name.rawValue), "crops": crops.rawValue,
         "average": average.rawValue, "images": result.images, "skipped": result.skipped.count,
         "top1": result.top1Accuracy, "top5": result.top5Accuracy, "top1_error": result.top1Error,
         "top5_error": result.top5Error, "images_per_second": result.imagesPerSecond, "seconds": result.seconds,
         "batch": batch,
         "per_image": result.scores.map { score in
             ["image": score.path, "label": score.label, "top1_correct": score.top1Correct,
              "top5_correct": score.top5Correct,
              "top5": score.top5.map { ["index": $0.index, "label": $0.label,
                                        "probability": Double($0.probability)] as [String: Any] }] as [String: Any]
         }]
    }
}
