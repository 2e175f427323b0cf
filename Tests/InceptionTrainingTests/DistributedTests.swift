import Foundation
import Inception
import InceptionIO
import InceptionReferences
import InceptionTestSupport
import Testing

/// `mpirun -np 2 inception train` (Open MPI, which the test command installs): against PyTorch's
/// DistributedDataParallel, against one process with the same global batch, and with a rank killed mid-run.
@Suite(.serialized) struct DistributedTests {
    /// Per-parameter relative errors of `ours` against `theirs` (every float tensor of theirs, or `only` those).
    static func errors(_ ours: URL, _ theirs: URL, where only: (String) -> Bool) throws -> [(String, Double)] {
        let (a, b) = (try SafeTensorsFile(contentsOf: ours), try SafeTensorsFile(contentsOf: theirs))
        return try b.entries.keys.sorted().filter { !$0.hasSuffix("num_batches_tracked") && only($0) }.map {
            ($0, relativeError(try a.floats($0), try b.floats($0)))
        }
    }

    /// timm's inception_v4 under DDP (gloo, 2 processes, per-replica BatchNorm, SGD with momentum 0.9), from the
    /// same start (BatchNorm randomised) on the same per-rank batches (scripts/ddp_reference.py shuffles as our
    /// Trainer does): after 3 steps every parameter within 1e-4 relative of ours, rank 0's running statistics too,
    /// while the steps moved most parameters by more than that. At 139 px: at 75 px, with 1×1 maps in the last
    /// stage, PyTorch's own float32 and float64 runs end 1e-2 apart (near-ties in max pooling), as ours does.
    @Test func threeStepsAgreeWithPyTorchDDP() throws {
        let folder = try scratchDirectory("ddp")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (data, start) = try Self.prepare(folder)
        let runFolder = folder.appendingPathComponent("run")
        let ours = try MPI.run(2, [
            "train", "--model", "inception_v4", "--weights", start.path, "--data", data.path, "--epochs", "1",
            "--batch-size", "4", "--input-size", "139", "--optimizer", "sgd", "--lr", "0.01", "--momentum", "0.9",
            "--weight-decay", "0", "--schedule", "constant", "--dropout", "0", "--crop-area", "1", "--no-flip",
            "--seed", "5", "--threads", "1", "--output", runFolder.path])
        try #require(ours.status == 0, "\(ours.stderr)")
        let reference = folder.appendingPathComponent("ddp.safetensors")
        let ddp = try run(venvPython(), ["-W", "ignore", Self.script, "run", data.path, start.path, reference.path,
                                         "--ranks", "2", "--batch", "4", "--steps", "3", "--seed", "5",
                                         "--lr", "0.01"])
        try #require(ddp.status == 0, "\(ddp.stderr)")
        let model = runFolder.appendingPathComponent("model.safetensors")
        let parameters = try Self.errors(model, reference) { !$0.contains("running_") }
        let buffers = try Self.errors(model, reference) { $0.contains("running_") }
        let worst = parameters.max { $0.1 < $1.1 }!, worstBuffer = buffers.max { $0.1 < $1.1 }!
        print("DDP: \(parameters.count) parameters, worst \(worst); running statistics worst \(worstBuffer)")
        #expect(parameters.allSatisfy { $0.1 < 1e-4 }, "worst \(worst)")
        #expect(buffers.allSatisfy { $0.1 < 1e-4 }, "worst \(worstBuffer)")
        let moved = try Self.errors(start, reference) { !$0.contains("running_") }.filter { $0.1 > 1e-4 }.count
        #expect(moved > parameters.count / 2, "only \(moved) of \(parameters.count) parameters moved by 1e-4")
    }

    static let script = repositoryRoot.appendingPathComponent("scripts/ddp_reference.py").path

    /// In `folder`: the reference photos as 139×139 PNGs in two classes, each twice (28 images: three global batches
    /// of 8), and a starting checkpoint of inception_v4 for them with BatchNorm randomised (scripts/ddp_reference.py).
    static func prepare(_ folder: URL) throws -> (data: URL, start: URL) {
        let (data, start) = (folder.appendingPathComponent("data"), folder.appendingPathComponent("start.safetensors"))
        let initial = folder.appendingPathComponent("init.safetensors")
        let made = try runInception(["init", "--model", "inception_v4", "--classes", "2", "--output", initial.path])
        try #require(made.status == 0, "\(made.stderr)")
        let prepared = try run(venvPython(), ["-W", "ignore", script, "prepare", data.path, start.path, initial.path,
                                              "139", "--duplicate"],
                               environment: ["INCEPTION_REFERENCE_DIR": References.directory.path])
        try #require(prepared.status == 0, "\(prepared.stderr)")
        return (data, start)
    }

    /// The reference photos in two classes, each twice (28 images: three global batches of 8).
    static func photos() throws -> URL {
        let data = try References.dataset()
        for folder in try FileManager.default.contentsOfDirectory(atPath: data.path) {
            let path = data.appendingPathComponent(folder)
            for file in try FileManager.default.contentsOfDirectory(atPath: path.path) {
                try FileManager.default.copyItem(at: path.appendingPathComponent(file),
                                                 to: path.appendingPathComponent("copy-" + file))
            }
        }
        return data
    }

    static func training(_ data: URL, _ run: URL, batch: Int, epochs: Int = 1) -> [String] {
        ["train", "--model", "inception_resnet_v1", "--repeats", "1,1,1", "--data", data.path, "--epochs", "\(epochs)",
         "--batch-size", "\(batch)", "--input-size", "75", "--optimizer", "sgd", "--lr", "0.001", "--dropout", "0",
         "--seed", "3", "--threads", "1", "--output", run.path]
    }

    /// 2 ranks × 4 images with --sync-batchnorm end the epoch within 1e-5 (per tensor, running statistics included)
    /// of 1 process × 8: the same images in each global batch, augmented alike (random crops and flips), the same
    /// statistics. Without --sync-batchnorm most tensors end further apart than that, so the bar tells them apart.
    /// Inception-v4 at 139 px from randomised BatchNorm: at 75 px near-ties in max pooling flip with the last bit
    /// of a sum (the stem then ends 1e-4 apart), and tensors that start at zero measure only their updates.
    @Test func syncBatchNormMatchesOneProcessWithTheGlobalBatch() throws {
        let folder = try scratchDirectory("syncbn")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (data, start) = try Self.prepare(folder)
        func training(_ name: String, batch: Int) -> [String] {
            ["train", "--model", "inception_v4", "--weights", start.path, "--data", data.path, "--epochs", "1",
             "--batch-size", "\(batch)", "--input-size", "139", "--optimizer", "sgd", "--lr", "0.003", "--dropout", "0",
             "--seed", "3", "--threads", "1", "--output", folder.appendingPathComponent(name).path]
        }
        let synchronised = try MPI.run(2, training("two", batch: 4) + ["--sync-batchnorm"])
        try #require(synchronised.status == 0, "\(synchronised.stderr)")
        let perReplica = try MPI.run(2, training("apart", batch: 4))
        try #require(perReplica.status == 0, "\(perReplica.stderr)")
        let alone = try runInception(training("one", batch: 8))
        try #require(alone.status == 0, "\(alone.stderr)")
        let one = folder.appendingPathComponent("one/model.safetensors")
        let errors = try Self.errors(folder.appendingPathComponent("two/model.safetensors"), one) { _ in true }
        let worst = errors.max { $0.1 < $1.1 }!
        print("sync BatchNorm: \(errors.count) tensors, worst \(worst)")
        #expect(errors.allSatisfy { $0.1 < 1e-5 }, "worst \(worst)")
        let apart = try Self.errors(folder.appendingPathComponent("apart/model.safetensors"), one) { _ in true }
        #expect(apart.filter { $0.1 > 1e-5 }.count > apart.count / 2)
    }

    /// A rank killed mid-step ends the job: the other rank says so in one line and mpirun exits non-zero, in well
    /// under 60 s; the run then resumes from its last checkpoint with one process and finishes.
    @Test func aKilledRankEndsTheJobAndTheRunResumesAlone() throws {
        let data = try Self.photos()
        defer { References.removeScratch(data) }
        let run = data.appendingPathComponent("../killed").standardized
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/mpirun")
        process.arguments = MPI.launch(2) + [inceptionExecutable().path] + Self.training(data, run, batch: 2,
                                                                                           epochs: 30)
        let (out, err) = (Pipe(), Pipe())
        (process.standardOutput, process.standardError) = (out, err)
        try process.run()
        let state = run.appendingPathComponent("state.json")
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: state.path) && Date() < deadline { usleep(100_000) }
        try #require(FileManager.default.fileExists(atPath: state.path), "no epoch was saved")
        let rank1 = try #require(MPI.processOfRank(1, arguments: run.path), "rank 1 not found")
        let killed = Date()
        kill(rank1, SIGKILL)
        process.waitUntilExit()
        let seconds = Date().timeIntervalSince(killed)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus != 0 && seconds < 60, "status \(process.terminationStatus), \(seconds) s")
        #expect(stderr.contains("error: rank 0: "), "\(stderr)")
        print("killed rank 1: mpirun exited \(process.terminationStatus) after \(seconds) s")
        let resumed = try runInception(Self.training(data, run, batch: 2, epochs: 2) + ["--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let saved = try JSONSerialization.jsonObject(with: Data(contentsOf: state)) as? [String: Any]
        #expect(saved?["epoch"] as? Int == 2)
    }

    /// The ranks validate their shares with rank 0's running statistics (per-replica BatchNorm leaves each rank its
    /// own), so the accuracy an epoch reports is that of the checkpoint rank 0 saves, as `inception eval` measures it;
    /// a run started alone resumes on two ranks.
    @Test func validationIsThatOfTheSavedCheckpoint() throws {
        let data = try References.dataset()
        defer { References.removeScratch(data) }
        let run = data.appendingPathComponent("../validated").standardized
        func training(epochs: Int) -> [String] {
            ["train", "--model", "inception_resnet_v1", "--repeats", "1,1,1", "--data", data.path, "--val", data.path,
             "--input-size", "75", "--optimizer", "sgd", "--lr", "0.001", "--seed", "3", "--threads", "1",
             "--batch-size", "2", "--average-decay", "0.9", "--epochs", "\(epochs)", "--output", run.path]
        }
        let alone = try runInception(training(epochs: 1))
        try #require(alone.status == 0, "\(alone.stderr)")
        let resumed = try MPI.run(2, training(epochs: 3) + ["--resume"])
        try #require(resumed.status == 0, "\(resumed.stderr)")
        let lines = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        let last = try #require(try JSONSerialization.jsonObject(with: Data(lines.split(separator: "\n").last!.utf8))
                                as? [String: Any])
        #expect(last["epoch"] as? Int == 3 && last["ranks"] as? Int == 2)
        let eval = try runInception(["eval", "--weights", run.appendingPathComponent("average.safetensors").path,
                                     data.path, "--json"])
        let measured = try JSONSerialization.jsonObject(with: Data(eval.stdout.utf8)) as? [String: Any]
        #expect(measured?["top1"] as? Double == last["validationAccuracy"] as? Double, "\(eval.stdout)")
    }
}
