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

    /// Under `mpirun`, each rank evaluates its shard of the images in rounds of a few passes (`BatchJob`); rank 0
    /// gathers every image's outcome, in order, and reports the totals as one process does.
    func run() throws {
        try reportingErrors {
            let job = try BatchJob.fromEnvironment()
            let (ensemble, data) = try job.together("loading") {
                let ensemble = try members.load(precision)
                let data = try ensemble.members[0].imageFolder(directory)
                for member in ensemble.members {
                    try member.checkMemory(batch: min(batch, data.samples.count * crops.rawValue),
                                           size: member.inputSize)
                }
                return (ensemble, data)
            }
            let result = try evaluate(ensemble, data, job)
            guard job.isRoot else { return }
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

    /// Every image scored or skipped, in order, on rank 0 (alone: in one round, as `Ensemble.evaluate` runs it).
    private func evaluate(_ ensemble: Ensemble, _ data: ImageFolder, _ job: BatchJob) throws -> Evaluation {
        let count = min(limit ?? data.samples.count, data.samples.count)
        let step = job.ranks == 1 ? max(count, 1) : 4 * max(1, batch / crops.rawValue)
        let bar = ProgressBar(), started = Date()
        var result = Evaluation()
        try job.run(count: count, step: step, inOrder: true) { positions in
            guard !positions.isEmpty else { return [] }
            let part = try ensemble.evaluate(data.subset(positions), batch: batch, crops: crops, average: average,
                                             threads: threads.threads, stopOnError: stopOnError) { done, _ in
                guard job.isRoot else { return }
                let done = result.images + result.skipped.count + done * job.ranks
                let rate = Double(done) / max(Date().timeIntervalSince(started), 1e-9)
                let left = ProgressBar.duration(Double(count - done) / max(rate, 1e-9))
                bar.show("eval", done, of: count, detail: String(format: "%d/%d %.1f img/s, %@ left", done, count,
                                                                 rate, left))
            }
            return try BatchRecords.encode(part.scores.map {
                ImageRecord(path: $0.path, label: $0.label, predictions: $0.top5.map(PredictionRecord.init))
            } + part.skipped.map { ImageRecord(path: $0.path, error: $0.reason) })
        } collect: { _, bytes in
            for record in try BatchRecords.decode([ImageRecord].self, bytes) {
                if let reason = record.error { result.skipped.append((record.path, reason)); continue }
                result.scores.append(ImageScore(path: record.path, label: record.label!,
                                                top5: record.predictions!.map(\.prediction)))
            }
        }
        bar.finish()
        result.seconds = Date().timeIntervalSince(started)
        return result
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
