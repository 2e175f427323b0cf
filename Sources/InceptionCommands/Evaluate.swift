import ArgumentParser
import Foundation
import Inception

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Top-1 and top-5 accuracy on an image folder (one sub-folder per class).",
        discussion: """
            Class folders are named as the checkpoint's classes (a run of `inception train` stores them, so the \
            folders it trained on evaluate as they are), or for an ImageNet classifier by WordNet id or class index.
            """)

    @OptionGroup var weights: WeightsOption

    @OptionGroup var precision: PrecisionOption

    @Option(help: "Images per forward pass.")
    var batch: Int = 8

    @Option(help: "Evaluate only the first N images.")
    var limit: Int?

    @Flag(help: "Stop at the first image that cannot be decoded (default: report and skip it).")
    var stopOnError = false

    @Flag(help: "Print JSON.")
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
            let net = try weights.load(precision)
            let data = try net.imageFolder(directory)
            try net.checkMemory(batch: min(batch, data.samples.count), size: net.inputSize)
            let bar = ProgressBar(), started = Date()
            let result = try net.evaluate(data, batch: batch, threads: threads.threads, stopOnError: stopOnError,
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
            if json {
                try printJSON(["model": net.name.rawValue, "images": result.images, "skipped": result.skipped.count,
                               "top1": result.top1Accuracy, "top5": result.top5Accuracy,
                               "images_per_second": result.imagesPerSecond, "seconds": result.seconds, "batch": batch])
            } else {
                print(String(format: "%@ on %d images: top-1 %.2f%%, top-5 %.2f%%, %.2f images/s%@", net.name.rawValue,
                             result.images, 100 * result.top1Accuracy, 100 * result.top5Accuracy,
                                 result.imagesPerSecond,
                             result.skipped.isEmpty ? "" : " (\(result.skipped.count) skipped)"))
            }
        }
    }
}
