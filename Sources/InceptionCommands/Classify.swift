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
        guard top >= 1 else { throw CLIError("--top must be at least 1") }
    }

    /// Under `mpirun`, each rank classifies its shard of the images (`BatchJob`) and rank 0 prints every result in
    /// order; an unreadable image is reported by the rank that read it.
    func run() throws {
        try reportingErrors {
            let job = try BatchJob.fromEnvironment()
            let ensemble = try job.together("loading") {
                try input.checkFiles()
                let ensemble = try members.load(precision)
                for net in ensemble.members {
                    try net.checkMemory(batch: min(input.batch, input.images.count * crops.rawValue),
                                        size: net.inputSize)
                }
                return ensemble
            }
            var results: [[String: Any]] = [], failed = 0
            // Images per step: a pass of --batch views, or one image's views when it has more.
            try job.run(count: input.images.count, step: max(1, input.batch / crops.rawValue),
                        inOrder: true) { positions in
                try BatchRecords.encode(try classify(positions.map { input.images[$0] }, ensemble))
            } collect: { _, bytes in
                for record in try BatchRecords.decode([ImageRecord].self, bytes) {
                    if let reason = record.error {
                        failed += 1
                        if json { results.append(["image": record.path, "error": reason]) }
                    } else {
                        show(record.path, record.predictions!.map(\.prediction), into: &results)
                    }
                }
            }
            guard job.isRoot else { return }
            if json { try printJSON(results) }
            // The image's own line says it all for one image; for several, a count closes the run.
            if failed > 0 && input.images.count == 1 { throw ExitCode(1) }
            if failed > 0 { throw CLIError("\(failed) of \(input.images.count) images could not be read") }
        }
    }

    /// Each image's top classes, or why it could not be read, in order.
    private func classify(_ paths: [String], _ ensemble: Ensemble) throws -> [ImageRecord] {
        var records = [ImageRecord?](repeating: nil, count: paths.count)
        var views: [[[[Float]]]] = [], positions: [Int] = []
        for (i, path) in paths.enumerated() {
            let (images, problems) = input.prepare([path]) { ensemble.views([$0], crops: crops)[0] }
            if let problem = problems.first { records[i] = ImageRecord(path: path, error: problem.reason) }
            views += images.map(\.pixels)
            positions += images.map { _ in i }
        }
        if !views.isEmpty {
            let probabilities = try ensemble.probabilities(views: views, average: average, batch: input.batch,
                                                           threads: input.threads.threads)
            for (i, top) in zip(positions, ensemble.predictions(probabilities, top: top)) {
                records[i] = ImageRecord(path: paths[i], predictions: top.map(PredictionRecord.init))
            }
        }
        return records.compactMap { $0 }
    }

    /// One image's predictions, printed or kept for the JSON.
    private func show(_ path: String, _ top: [Prediction], into results: inout [[String: Any]]) {
        if json {
            results.append(["image": path, "predictions": top.map {
                ["index": $0.index, "label": $0.label, "wordnet_id": $0.wordNetID ?? NSNull(),
                 "probability": Double($0.probability)] as [String: Any]
            }])
        } else {
            print(path)
            for (rank, p) in top.enumerated() {
                print(String(format: "  %d. %6.2f%%  %@  %@", rank + 1, 100 * p.probability, p.wordNetID ?? "-",
                             p.label))
            }
        }
    }
}
