import Foundation
import Inception
import InceptionTraining
import InceptionIO
import InceptionReferences
import InceptionTestSupport
import Testing

/// `inception train` end to end on a tiny image folder: checkpoints timm loads strictly with the same logits, and
/// a run killed mid-way resumes to exactly the uninterrupted run.
@Suite(.serialized) struct TrainCommandTests {
    static func arguments(_ data: URL, _ run: URL, epochs: Int) -> [String] {
        ["train", "--model", "inception_v4", "--data", data.path, "--val", data.path, "--output", run.path,
         "--epochs", "\(epochs)", "--batch-size", "4", "--input-size", "75", "--optimizer", "sgd", "--lr", "0.01",
         "--average-decay", "0.9", "--seed", "3"]
    }

    /// A learning rate far too high: a warning, then a stop that names the divergence before the epoch's
    /// checkpoint is written. A folder that holds a run is refused until --overwrite; the checkpoint carries its
    /// class names, input size and depth, so classify and eval need no --model and label by name.
    @Test func divergenceStopsAndARunIsNeverOverwrittenSilently() throws {
        let data = try References.dataset()
        defer { References.removeScratch(data) }
        let run = data.appendingPathComponent("../run-\(UUID().uuidString)").standardized
        let arguments = ["train", "--model", "inception_resnet_v1", "--repeats", "1,1,1", "--data", data.path,
                         "--output", run.path, "--epochs", "1", "--batch-size", "4", "--input-size", "75"]
        let diverged = try runInception(arguments + ["--lr", "50"])
        #expect(diverged.status == 1)
        #expect(diverged.stderr.contains("warning: epoch 1, step "), "\(diverged.stderr)")
        #expect(diverged.stderr.contains("error: training diverged: epoch 1's mean loss is ")
                && diverged.stderr.hasSuffix("(lower --lr, or --clip-norm the gradients)\n"), "\(diverged.stderr)")
        let checkpoint = run.appendingPathComponent("model.safetensors")
        #expect(!FileManager.default.fileExists(atPath: checkpoint.path))
        #expect(try runInception(arguments).status == 0)  // nothing was saved: a new run may start there
        let again = try runInception(arguments)
        #expect(again.status == 1 && again.stderr == "error: \(run.path) already holds a training run "
                + "(--resume continues it, --overwrite starts a new one there)\n")
        let overwritten = try runInception(arguments + ["--overwrite", "--json"])
        #expect(overwritten.status == 0, "\(overwritten.stderr)")
        let summary = try JSONSerialization.jsonObject(with: Data(overwritten.stdout.split(separator: "\n")
            .drop { !$0.hasPrefix("{") }.dropFirst().joined(separator: "\n").utf8)) as? [String: Any]
        #expect(summary?["classes"] as? [String] == ["cats", "dogs"] && summary?["input_size"] as? Int == 75)
        let model = try InceptionModel(.inceptionResNetV1, weights: checkpoint)
        #expect(model.classNames == ["cats", "dogs"] && model.inputSize == 75 && model.label(1).name == "dogs")
        let image = try FileManager.default.contentsOfDirectory(atPath: data.appendingPathComponent("dogs").path)[0]
        let classify = try runInception(["classify", "--weights", checkpoint.path,
                                         data.appendingPathComponent("dogs/\(image)").path])
        #expect(classify.status == 0 && classify.stdout.contains("  -  cats") && classify.stdout.contains("  -  dogs"))
        let eval = try runInception(["eval", "--weights", checkpoint.path, "--json", data.path])
        #expect(eval.status == 0, "\(eval.stderr)")
    }

    /// metrics.jsonl without the timing field.
    static func epochs(_ run: URL) throws -> [EpochMetrics] {
        try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
            .map { try JSONDecoder().decode(EpochMetrics.self, from: Data($0.utf8)) }
    }

    static func metrics(_ run: URL) throws -> [String] {
        try String(contentsOf: run.appendingPathComponent("metrics.jsonl"),
                   encoding: .utf8).split(separator: "\n").map {
            var m = try JSONDecoder().decode(EpochMetrics.self, from: Data($0.utf8))
            m.imagesPerSecond = 0
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            return String(decoding: try encoder.encode(m), as: UTF8.self)
        }.sorted()
    }

    /// Runs `inception` with `arguments`, SIGKILLs it (no chance to clean up) once the first epoch is saved in `run`,
    /// then resumes it to the end.
    static func killAfterTheFirstEpochAndResume(_ arguments: [String], run: URL) throws {
        let process = Process()
        process.executableURL = inceptionExecutable()
        process.arguments = arguments
        (process.standardOutput, process.standardError) = (FileHandle.nullDevice, FileHandle.nullDevice)
        try process.run()
        let state = run.appendingPathComponent("state.json")
        while process.isRunning && !FileManager.default.fileExists(atPath: state.path) { usleep(20_000) }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal, "the run finished before it could be killed")
        let resumed = try runInception(arguments + ["--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
    }

    @Test func resumeAfterAKillRepeatsTheUninterruptedRun() throws {
        let data = try References.dataset()
        defer { References.removeScratch(data) }
        let whole = data.appendingPathComponent("../run-whole-\(UUID().uuidString)").standardized
        let killed = data.appendingPathComponent("../run-killed-\(UUID().uuidString)").standardized
        let result = try runInception(Self.arguments(data, whole, epochs: 3))
        #expect(result.status == 0, "\(result.stderr)")

        try Self.killAfterTheFirstEpochAndResume(Self.arguments(data, killed, epochs: 3), run: killed)

        #expect(try Self.metrics(killed) == Self.metrics(whole))
        for file in ["model.safetensors", "average.safetensors", "optimizer.safetensors"] {
            #expect(try Data(contentsOf: killed.appendingPathComponent(file))
                        == Data(contentsOf: whole.appendingPathComponent(file)), "\(file) differs after resuming")
        }
    }

    @Test func checkpointLoadsStrictlyIntoTimmWithTheSameLogits() throws {
        let data = try References.dataset()
        defer { References.removeScratch(data) }
        let run = data.appendingPathComponent("../run-\(UUID().uuidString)").standardized
        // Fine-tuning the reference weights (1000 classes) on two: the classifier is replaced, the rest kept, and
        // the running statistics stay meaningful for inference.
        let result = try runInception(Self.arguments(data, run, epochs: 1).map { $0 == "75" ? "139" : $0 }
            + ["--weights", try References.weights(.inceptionV4).path])
        #expect(result.status == 0, "\(result.stderr)")
        let checkpoint = run.appendingPathComponent("model.safetensors")
        let x = try References.url(.inceptionV4, "x_139.npy")
        let timm = try TrainCommandTests.run(["scripts/timm_logits.py", "inception_v4", checkpoint.path, x.path])
        let theirs = try JSONSerialization.jsonObject(with: Data(timm.utf8)) as! [[Double]]
        let model = try InceptionModel(.inceptionV4, weights: checkpoint)
        let ours = try model(nchw: References.tensor(.inceptionV4, "x_139.npy"))
        #expect(ours.shape == [theirs.count, 2])
        let error = relativeError(ours.scalars, theirs.flatMap { $0.map(Float.init) })
        #expect(error < 1e-4, "logits differ from timm's by \(error)")
    }

    /// The face model trains like the others, and its validation scores its logits — not its primary output, the
    /// 512-wide normalised embedding: the accuracy in metrics.jsonl is the checkpoint's, computed here from its logits.
    @Test func faceModelValidationScoresItsLogits() throws {
        let data = try References.dataset()
        defer { References.removeScratch(data) }
        let run = data.appendingPathComponent("../run-\(UUID().uuidString)").standardized
        let arguments = Self.arguments(data, run,
                                       epochs: 1).map { $0 == "inception_v4" ? "inception_resnet_v1_facenet" : $0 }
        let result = try runInception(arguments.filter { $0 != "--average-decay" && $0 != "0.9" })
        #expect(result.status == 0, "\(result.stderr)")
        let line = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        let reported = try JSONDecoder().decode(EpochMetrics.self, from: Data(line.utf8)).validationAccuracy
        let model = try InceptionModel(.inceptionResNetV1FaceNet,
                                       weights: run.appendingPathComponent("model.safetensors"))
        #expect(model.classes == 2 && model.primaryOutput == "embedding")
        var correct = 0, count = 0
        for (label, folder) in ["cats", "dogs"].enumerated() {
            let dir = data.appendingPathComponent(folder)
            for file in try FileManager.default.contentsOfDirectory(atPath: dir.path) {
                let image = try RGBImage(contentsOf: dir.appendingPathComponent(file))
                let x = model.name.spec.preprocessing.batch([image], inputSize: 75)
                let logits = try model.compiled.run(x, output: model.graph.outputs["logits"]).scalars
                if logits.firstIndex(of: logits.max()!) == label { correct += 1 }
                count += 1
            }
        }
        #expect(count >= 8 && reported == Double(correct) / Double(count), "reported \(String(describing: reported))")
    }

    /// TF-slim's auxiliary head: its weights go to auxiliary.safetensors, never into the checkpoint, which timm still
    /// loads strictly with the same logits.
    @Test func auxiliaryHeadStaysOutOfTheCheckpointTimmLoads() throws {
        let data = try References.dataset()
        defer { References.removeScratch(data) }
        let run = data.appendingPathComponent("../run-\(UUID().uuidString)").standardized
        let result = try runInception(Self.arguments(data, run, epochs: 1).map { $0 == "75" ? "299" : $0 }
            + ["--weights", try References.weights(.inceptionV4).path, "--aux-head"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("(auxiliary "), "\(result.stdout)")
        let checkpoint = run.appendingPathComponent("model.safetensors")
        let x = try References.url(.inceptionV4, "x_299.npy")
        let timm = try TrainCommandTests.run(["scripts/timm_logits.py", "inception_v4", checkpoint.path, x.path])
        let theirs = try JSONSerialization.jsonObject(with: Data(timm.utf8)) as! [[Double]]
        let ours = try InceptionModel(.inceptionV4, weights: checkpoint)(nchw: References.tensor(.inceptionV4,
            "x_299.npy"))
        #expect(ours.shape == [theirs.count, 2])
        let error = relativeError(ours.scalars, theirs.flatMap { $0.map(Float.init) })
        #expect(error < 1e-4, "logits differ from timm's by \(error)")
        let head = try SafeTensorsFile(contentsOf: run.appendingPathComponent("auxiliary.safetensors"))
        let plain = Set(ModelName.inceptionV4.graph(classes: 2).parameters.map(\.name))
        let auxiliary = ModelName.inceptionV4.graph(classes: 2,
                                                    auxiliaryHead: true).parameters.filter { !plain.contains($0.name) }
        #expect(Set(head.entries.keys) == Set(auxiliary.map(\.name)))
        #expect(head.entries["aux_logits.fc.weight"]?.shape == [2, 768])
    }

    /// A run with the auxiliary head killed after its first epoch resumes (the head's weights and optimiser state
    /// included) to exactly the uninterrupted run; the head is refused where it cannot be built.
    @Test func auxiliaryHeadRunsResumeAndAreRefusedWhereTheyCannotBeBuilt() throws {
        let data = try References.dataset()
        defer { References.removeScratch(data) }
        func arguments(_ run: URL) -> [String] {
            Self.arguments(data, run, epochs: 2).map { $0 == "75" ? "299" : $0 } + ["--repeats", "1,1,1", "--aux-head"]
        }
        let whole = data.appendingPathComponent("../run-whole-\(UUID().uuidString)").standardized
        let killed = data.appendingPathComponent("../run-killed-\(UUID().uuidString)").standardized
        let result = try runInception(arguments(whole))
        #expect(result.status == 0, "\(result.stderr)")
        try Self.killAfterTheFirstEpochAndResume(arguments(killed), run: killed)
        #expect(try Self.metrics(killed) == Self.metrics(whole))
        let metrics = try String(contentsOf: whole.appendingPathComponent("metrics.jsonl"),
                                 encoding: .utf8).split(separator: "\n")
            .map { try JSONDecoder().decode(EpochMetrics.self, from: Data($0.utf8)) }
        #expect(metrics.count == 2 && metrics.allSatisfy { $0.trainAuxiliaryLoss?.isFinite == true })
        for file in ["model.safetensors", "auxiliary.safetensors", "average.safetensors", "optimizer.safetensors"] {
            #expect(try Data(contentsOf: killed.appendingPathComponent(file))
                        == Data(contentsOf: whole.appendingPathComponent(file)), "\(file) differs after resuming")
        }
        // Resuming without the head's file is refused, naming what is missing.
        try FileManager.default.removeItem(at: killed.appendingPathComponent("auxiliary.safetensors"))
        let orphan = try runInception(arguments(killed).map { $0 == "2" ? "3" : $0 } + ["--resume"])
        #expect(orphan.status == 1)
        #expect(orphan.stderr.hasPrefix("error: ") && orphan.stderr.contains("auxiliary.safetensors"),
                "\(orphan.stderr)")

        let other = data.appendingPathComponent("../run-\(UUID().uuidString)").standardized
        var refused = try runInception(arguments(other).map { $0 == "inception_v4" ? "inception_resnet_v1" : $0 })
        #expect(refused.stderr == """
            error: inception_resnet_v1 has no auxiliary head (TF-slim released one for inception_v4 and \
            inception_resnet_v2)\n
            """)
        refused = try runInception(arguments(other).map { $0 == "299" ? "139" : $0 })
        #expect(refused.status == 1)
        let prefix = "error: the auxiliary head needs a 17×17 to 19×19 map after the B blocks (input 2"
        #expect(refused.stderr.hasPrefix(prefix), "\(refused.stderr)")
        #expect(refused.stderr.hasSuffix("and input 139 does not give one\n"), "\(refused.stderr)")
    }

    static func run(_ arguments: [String]) throws -> String {
        let result = try InceptionReferences.run(venvPython(), arguments.enumerated().map {
            $0.offset == 0 ? repositoryRoot.appendingPathComponent($0.element).path : $0.element
        })
        guard result.status == 0 else { throw References.Missing(path: "python failed: \(result.stderr)") }
        return result.stdout
    }

    @Test func aNonFiniteLossStopsTrainingNamingTheStep() throws {
        let data = try References.dataset()
        defer { References.removeScratch(data) }
        let run = data.appendingPathComponent("../run-\(UUID().uuidString)").standardized
        // A learning rate that overflows the weights within the first epoch.
        let result = try runInception(Self.arguments(data, run, epochs: 2).map { $0 == "0.01" ? "1e30" : $0 })
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix("error: the loss is NaN or infinite at epoch 1, step "), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1)
    }

    @Test func badTrainingInputsAreOneLineErrors() throws {
        let data = try References.dataset()
        defer { References.removeScratch(data) }
        let run = data.appendingPathComponent("../run-\(UUID().uuidString)").standardized
        let images = try FileManager.default.subpathsOfDirectory(atPath: data.path).filter { $0.contains(".") }.count
        var result = try runInception(Self.arguments(data, run, epochs: 1) + ["--resume"])
        #expect(result.status == 1)
        #expect(result.stderr == "error: nothing to resume in \(run.path): no state.json from a completed epoch\n")
        result = try runInception(Self.arguments(data, run, epochs: 1).map { $0 == "4" ? "64" : $0 })
        #expect(result.status == 1)
        #expect(result.stderr == "error: the training set has \(images) images, fewer than one batch of 64\n")
        let validation = data.appendingPathComponent("../val-\(UUID().uuidString)").standardized
        try FileManager.default.createDirectory(at: validation.appendingPathComponent("birds"),
                                                withIntermediateDirectories: true)
        var arguments = Self.arguments(data, run, epochs: 1)
        arguments[arguments.firstIndex(of: "--val")! + 1] = validation.path
        result = try runInception(arguments)
        #expect(result.status == 1)
        #expect(result.stderr == "error: class folder 'birds' is not one of the training set's classes\n")
    }

    @Test func resumingWithDifferentSettingsNamesThem() throws {
        let data = try References.dataset()
        defer { References.removeScratch(data) }
        let run = data.appendingPathComponent("../run-\(UUID().uuidString)").standardized
        let first = try runInception(Self.arguments(data, run, epochs: 1))
        #expect(first.status == 0, "\(first.stderr)")
        let before = try Data(contentsOf: run.appendingPathComponent("model.safetensors"))
        // A different learning rate and seed: refused, naming both, and nothing in the run is touched.
        let changed = Self.arguments(data, run, epochs: 2).map { $0 == "0.01" ? "0.02" : $0 == "3" ? "4" : $0 }
            + ["--resume"]
        let refused = try runInception(changed)
        #expect(refused.status == 1)
        #expect(refused.stderr == """
            error: cannot resume: schedule, seed differ from the run's config.json (only the number of epochs may \
            change)\n
            """)
        #expect(try Data(contentsOf: run.appendingPathComponent("model.safetensors")) == before)
        #expect(try Self.metrics(run).count == 1)
        // More epochs alone is a continuation.
        let resumed = try runInception(Self.arguments(data, run, epochs: 2) + ["--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try Self.metrics(run).count == 2)
    }

    /// A file that is no image is found before epoch 1 (every header is checked first): one line naming it and
    /// --skip-unreadable, and no run folder left; with the flag it is reported once and left out of both sets.
    @Test func anUndecodableImageStopsTrainingOrIsLeftOut() throws {
        let data = try References.dataset()
        defer { References.removeScratch(data) }
        let broken = data.appendingPathComponent("cats/broken.jpg")
        try Data([0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]).write(to: broken)
        let images = try FileManager.default.subpathsOfDirectory(atPath: data.path).filter { $0.contains(".") }.count
        // One batch of every readable image.
        let arguments = { (run: URL) in Self.arguments(data, run, epochs: 2).map { $0 == "4" ? "\(images - 1)" : $0 } }
        let elsewhere = data.appendingPathComponent("../run-\(UUID().uuidString)").standardized
        let stopped = try runInception(arguments(elsewhere))
        #expect(stopped.status == 1)
        #expect(stopped.stderr.hasPrefix("error: \(broken.path): corrupt JPEG")
                && stopped.stderr.hasSuffix("(--skip-unreadable leaves such images out)\n"), "\(stopped.stderr)")
        #expect(stopped.stderr.split(separator: "\n").count == 1)
        #expect(!FileManager.default.fileExists(atPath: elsewhere.path))

        let run = data.appendingPathComponent("../run-\(UUID().uuidString)").standardized
        let skipped = try runInception(arguments(run) + ["--skip-unreadable"])
        #expect(skipped.status == 0, "\(skipped.stderr)")
        #expect(skipped.stderr.components(separatedBy: "skipped \(broken.path): corrupt JPEG").count - 1 == 1,
                "\(skipped.stderr)")
        let metrics = try Self.epochs(run)
        #expect(metrics.map(\.skippedImages) == [0, 0] && metrics.map(\.skippedBatches) == [0, 0])
        #expect(metrics.allSatisfy { $0.trainLoss.isFinite })
    }

    /// A validation image whose header and end are sound but whose data is not (a PNG chunk whose CRC fails) stops
    /// the run at validation — after the epoch's checkpoint, so --resume continues from it. Without a terminal the
    /// progress is plain lines, as in a log file.
    @Test func validationFailingKeepsTheEpochAndProgressIsLoggedWithoutATerminal() throws {
        let data = try References.dataset()
        defer { References.removeScratch(data) }
        let validation = data.appendingPathComponent("../val").standardized
        try FileManager.default.copyItem(at: data, to: validation)
        let png = try FileManager.default.subpathsOfDirectory(atPath: validation.path).first { $0.hasSuffix(".png") }!
        let file = validation.appendingPathComponent(png)
        let original = try Data(contentsOf: file)
        var bytes = original
        let idat = bytes.firstRange(of: Data("IDAT".utf8))!.upperBound
        bytes[idat + 10] ^= 0xFF
        try bytes.write(to: file)
        let run = data.appendingPathComponent("../run-\(UUID().uuidString)").standardized
        var arguments = Self.arguments(data, run, epochs: 2)
        arguments[arguments.firstIndex(of: "--val")! + 1] = validation.path
        let stopped = try runInception(arguments)
        #expect(stopped.status == 1 && stopped.stderr.contains("\(file.path): corrupt PNG"), "\(stopped.stderr)")
        #expect(stopped.stderr.contains(#/epoch 1/2 step \d+/\d+ \(100%\) loss [0-9.]+ acc [0-9.]+ lr [0-9.e-]+ /#))
        let state = try String(contentsOf: run.appendingPathComponent("state.json"), encoding: .utf8)
        #expect(state.contains("\"epoch\":1"), "\(state)")
        try original.write(to: file)  // the user mends the image, then resumes
        let resumed = try runInception(arguments + ["--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        // The stopped epoch is validated first, with the weights saved for it; then the run goes on.
        let epochs = try Self.epochs(run)
        #expect(epochs.map(\.epoch) == [1, 2] && epochs.allSatisfy { $0.validationAccuracy != nil })
    }

    @Test func reducedDepthRunsResumeAndCompareInOnePicture() throws {
        let data = try References.dataset()
        defer { References.removeScratch(data) }
        var runs: [URL] = []
        for model in ["inception_v4", "inception_resnet_v2"] {
            let run = data.appendingPathComponent("../run-\(model)-\(UUID().uuidString)").standardized
            let arguments = Self.arguments(data, run, epochs: 1).map { $0 == "inception_v4" ? model : $0 }
                + ["--repeats", "1,1,1"]
            let first = try runInception(arguments)
            #expect(first.status == 0, "\(first.stderr)")
            // Resuming reads the reduced network's checkpoint back strictly.
            let resumed = try runInception(arguments.map { $0 == "1" ? "2" : $0 } + ["--resume"])
            #expect(resumed.status == 0, "\(resumed.stderr)")
            let checkpoint = try SafeTensorsFile(contentsOf: run.appendingPathComponent("model.safetensors"))
            let graph = ModelName(rawValue: model)!.graph(classes: 2, repeats: [1, 1, 1])
            #expect(checkpoint.entries.count == graph.parameters.count)
            #expect(graph.parameters.count < ModelName(rawValue: model)!.graph(classes: 2).parameters.count)
            runs.append(run)
        }
        let svg = data.appendingPathComponent("../curves-\(UUID().uuidString).svg").standardized
        let drawn = try runInception(["curves"] + runs.map(\.path) + ["--output", svg.path])
        #expect(drawn.status == 0, "\(drawn.stderr)")
        let picture = try String(contentsOf: svg, encoding: .utf8)
        #expect(picture.contains("inception_v4 (blocks 1,1,1)")
                && picture.contains("inception_resnet_v2 (blocks 1,1,1)"))
        // Three curves (loss, train and validation accuracy) of two epochs for each run.
        #expect(picture.components(separatedBy: "<path d=\"M").count - 1 == 6)
        let missing = try runInception(["curves", data.path, "--output", svg.path])
        #expect(missing.status == 1)
        #expect(missing.stderr == "error: no metrics.jsonl in \(data.path)\n")
    }
}
