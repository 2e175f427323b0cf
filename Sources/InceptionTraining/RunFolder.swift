import Foundation
import Inception
import InceptionEngine
import InceptionIO

/// A run's folder: what a new run may replace, what a resumed one must match, and what every epoch writes
/// (config.json at the start; the weights, average, optimiser state, metrics, curves and state.json per epoch).
extension Trainer {
    struct RunState: Codable { var epoch: Int; var steps: Int }

    /// The files a run writes in its folder.
    static let runFiles = ["config.json", "state.json", "model.safetensors", "auxiliary.safetensors",
                           "average.safetensors", "optimizer.safetensors", "metrics.jsonl", "curves.svg"]

    /// Creates the run folder; refuses one that holds a run unless resuming it, or `overwrite` (which removes the
    /// run's files and leaves anything else in the folder).
    static func prepare(_ run: URL, resume: Bool, overwrite: Bool) throws {
        let fm = FileManager.default
        let existing = runFiles.filter { fm.fileExists(atPath: run.appendingPathComponent($0).path) }
        // A folder holds a run once an epoch has been saved; a run stopped before that has nothing to lose.
        let saved = existing.contains("state.json") || existing.contains("model.safetensors")
        if !resume && saved {
            guard overwrite else { throw TrainingError.runExists(run.path) }
            for file in existing { try fm.removeItem(at: run.appendingPathComponent(file)) }
        }
        try fm.createDirectory(at: run, withIntermediateDirectories: true)
    }

    /// The top-level fields of the two configurations' JSON that differ apart from the number of epochs, sorted.
    static func differingFields(_ a: TrainingConfiguration, _ b: TrainingConfiguration) throws -> [String] {
        func fields(_ c: TrainingConfiguration) throws -> [String: Data] {
            let object = try JSONSerialization.jsonObject(with: JSONEncoder.sorted.encode(c)) as! [String: Any]
            return try object.mapValues { try JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys,
                .fragmentsAllowed]) }
        }
        // The schedule's length follows the number of epochs (a cosine schedule stretches to the new end).
        var (a, b) = (a, b)
        (a.epochs, a.schedule.epochs) = (b.epochs, b.schedule.epochs)
        let (x, y) = (try fields(a), try fields(b))
        return Set(x.keys).union(y.keys).filter { x[$0] != y[$0] }.sorted()
    }

    /// Weights, average and optimiser state, the metrics lines and their picture, then `state.json` naming this
    /// epoch.
    func checkpoint(epoch: Int) throws {
        // The class names and input size travel with the weights, so the checkpoint classifies as it was trained.
        var metadata = CheckpointMetadata(model: name, classNames: configuration.classes,
                                          inputSize: configuration.inputSize, repeats: configuration.repeats).strings
        metadata["epoch"] = "\(epoch)"
        try SafeTensorsFile.write(name.checkpointTensors(graph, training.values), metadata: metadata,
                                  to: run.appendingPathComponent("model.safetensors"))
        if let auxiliaryHead {
            try SafeTensorsFile.write(auxiliaryHead.parameters.map { ($0.name, $0.shape, training.values[$0.name]!) },
                                      metadata: metadata, to: run.appendingPathComponent("auxiliary.safetensors"))
        }
        if let average {
            try SafeTensorsFile.write(name.checkpointTensors(graph, average.values), metadata: metadata,
                                      to: run.appendingPathComponent("average.safetensors"))
        }
        let state = optimizer.state.keys.sorted().map { ($0, [optimizer.state[$0]!.count], optimizer.state[$0]!) }
        try SafeTensorsFile.write(state, metadata: ["steps": "\(optimizer.steps)"],
                                  to: run.appendingPathComponent("optimizer.safetensors"))
        try saveMetrics()
        try Self.writeAtomically(try JSONEncoder.sorted.encode(RunState(epoch: epoch, steps: optimizer.steps)),
                                 to: run.appendingPathComponent("state.json"))
    }

    /// The last completed epoch's validation, when it has not run yet (a run stopped during it is resumed so, with
    /// the weights it was to validate), and its metrics saved with it.
    func validateUnfinishedEpoch(unreadableImage: (String, String) -> Void) throws {
        guard let validationSet, let last = history.last, last.epoch == completedEpochs,
              last.validationAccuracy == nil else { return }
        history[history.count - 1].validationAccuracy = try validate(validationSet, unreadableImage: unreadableImage)
        if communicator?.isRoot ?? true { try saveMetrics() }
    }

    /// Every epoch's metrics line, and the picture of them.
    func saveMetrics() throws {
        let lines = try history.map { try $0.jsonLine() }.joined(separator: "\n") + "\n"
        try Self.writeAtomically(Data(lines.utf8), to: run.appendingPathComponent("metrics.jsonl"))
        try Self.writeAtomically(Data(curvesSVG(history).utf8), to: run.appendingPathComponent("curves.svg"))
    }

    static func writeAtomically(_ data: Data, to url: URL) throws { try FileOutput.write(data, to: url) }
}

/// What a run folder holds to resume from: the weights (and the auxiliary head's), the optimiser's state, the steps
/// and epochs done, the weight average, the metrics of the epochs done.
struct SavedRun {
    var values: [String: [Float]]
    var optimizerState: [String: [Float]] = [:]
    var steps = 0, epoch = 0
    var average: WeightAverage?
    var history: [EpochMetrics] = []
}

extension Trainer {
    /// Reads a saved run to resume, refusing a folder without one and a configuration that differs from its own.
    static func savedRun(_ run: URL, _ configuration: TrainingConfiguration, graph: Graph, trainingGraph: Graph,
                         auxiliaryHead: Bool) throws -> SavedRun {
        let name = configuration.model
        guard let data = try? Data(contentsOf: run.appendingPathComponent("state.json")),
              let state = try? JSONDecoder().decode(RunState.self, from: data) else {
            throw TrainingError.noRunToResume(run.path)
        }
        let saved = try JSONDecoder().decode(TrainingConfiguration.self,
                                             from: Data(contentsOf: run.appendingPathComponent("config.json")))
        let differing = try differingFields(saved, configuration)
        guard differing.isEmpty else { throw TrainingError.configurationDiffers(differing) }
        func values(_ file: String) throws -> [String: [Float]] {
            try name.trainingValues(for: graph, weights: run.appendingPathComponent(file), seed: configuration.seed,
                                    repeats: configuration.repeats)
        }
        var result = SavedRun(values: try values("model.safetensors"), steps: state.steps, epoch: state.epoch)
        if auxiliaryHead {
            let file = run.appendingPathComponent("auxiliary.safetensors")
            result.values.merge(try name.auxiliaryValues(for: trainingGraph, weights: file)) { a, _ in a }
        }
        let file = try SafeTensorsFile(contentsOf: run.appendingPathComponent("optimizer.safetensors"))
        for key in file.entries.keys { result.optimizerState[key] = try file.floats(key) }
        if let decay = configuration.averageDecay {
            result.average = WeightAverage(decay: decay, values: try values("average.safetensors"))
        }
        let lines = (try? String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)) ?? ""
        result.history = lines.split(separator: "\n")
            .compactMap { try? JSONDecoder().decode(EpochMetrics.self, from: Data($0.utf8)) }
            .filter { $0.epoch <= state.epoch }
        return result
    }
}
