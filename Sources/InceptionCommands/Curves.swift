import ArgumentParser
import InceptionTraining
import Foundation
import Inception
import InceptionIO

struct Curves: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw the loss and accuracy curves of one or more training runs in one SVG, to compare them.")

    @Argument(help: "Run folders written by `inception train`.")
    var runs: [String]

    @Option(help: "The SVG file to write.")
    var output: String

    @Flag(help: "Print what was drawn as JSON.")
    var json = false

    /// The runs' own files are inputs too: the picture cannot replace a run's checkpoint or metrics.
    func validate() throws {
        let files = runs.flatMap { run in
            ((try? FileManager.default.contentsOfDirectory(atPath: run)) ?? []).map { run + "/" + $0 }
        }
        try FlagRule.output(output, notAmong: runs + files, json: json)
    }

    func run() throws {
        try reportingErrors {
            let series = try runs.map { folder -> (String, [EpochMetrics]) in
                let run = URL(fileURLWithPath: folder)
                let metrics = run.appendingPathComponent("metrics.jsonl")
                guard let text = try? String(contentsOf: metrics, encoding: .utf8) else {
                    throw CLIError("no metrics.jsonl in \(folder)")
                }
                let history = try text.split(separator: "\n").enumerated().map { line, json in
                    do { return try JSONDecoder().decode(EpochMetrics.self, from: Data(json.utf8)) } catch {
                        throw CLIError("\(metrics.path) line \(line + 1) is not an epoch's metrics")
                    }
                }
                var label = run.lastPathComponent
                if let data = try? Data(contentsOf: run.appendingPathComponent("config.json")),
                   let config = try? JSONDecoder().decode(TrainingConfiguration.self, from: data) {
                    label = config.model.rawValue
                        + (config.repeats.map { " (blocks \($0.map(String.init).joined(separator: ",")))" } ?? "")
                        + " — \(run.lastPathComponent)"
                }
                return (label, history)
            }
            try FileOutput.write(Data(curvesSVG(series).utf8), to: output)
            if json {
                try printJSON(["output": output, "runs": series.map { ["label": $0.0, "epochs": $0.1.count] }])
            }
        }
    }
}
