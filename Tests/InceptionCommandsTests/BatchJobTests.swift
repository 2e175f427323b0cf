import Foundation
import Inception
import InceptionReferences
import InceptionTestSupport
import Testing

/// `mpirun -np N inception embed|predict|classify|eval`: each rank takes a contiguous shard of the inputs and rank 0
/// writes one output in input order, equal to one process's bit for bit whatever N; a rank's failure and a killed
/// rank end the job with one line of ours and no output file.
@Suite(.serialized) struct BatchJobTests {
    /// The reference photos, the unreadable file `broken.jpg`, and (`folder`) the same as an ImageNet-labelled folder.
    static func inputs(_ scratch: URL) throws -> (photos: [String], folder: String) {
        let images = References.directory.appendingPathComponent("images")
        let photos = try FileManager.default.contentsOfDirectory(atPath: images.path)
            .filter { $0.hasSuffix(".jpg") || $0.hasSuffix(".png") }.sorted()
            .map { images.appendingPathComponent($0).path }
        let folder = scratch.appendingPathComponent("folder")
        for (i, photo) in photos.enumerated() {
            let label = folder.appendingPathComponent(["0", "285", "919"][i % 3])
            try FileManager.default.createDirectory(at: label, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: photo, toPath: label.appendingPathComponent("\(i).jpg").path)
        }
        try Data("not an image".utf8).write(to: folder.appendingPathComponent("285/broken.jpg"))
        return (photos, folder.path)
    }

    /// Each command alone, then on 2 and 3 ranks with one thread each: the same bytes (eval's JSON apart from its
    /// timings).
    @Test func everyRankCountWritesWhatOneProcessWrites() throws {
        let scratch = try scratchDirectory("batch-job")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let (photos, folder) = try Self.inputs(scratch)
        let face = try References.weights(.inceptionResNetV1FaceNet).path
        let v4 = try References.weights(.inceptionV4).path
        let x = try References.url(.inceptionResNetV1FaceNet, "x_160.npy").path
        func commands(_ tag: String) -> [Command] {
            func out(_ name: String) -> String { scratch.appendingPathComponent("\(tag)-\(name)").path }
            return [
                Command("embed", ["embed", "--model", "inception_resnet_v1_facenet", "--no-detect", "--weights", face,
                                  "--batch", "2", "--output", out("embed.npy")] + photos, out("embed.npy")),
                Command("predict", ["predict", "--model", "inception_resnet_v1_facenet", "--weights", face,
                                    "--input", x, "--batch", "1", "--output", out("predict.npy")],
                        out("predict.npy")),
                Command("classify", ["classify", "--weights", v4, "--batch", "2", "--json"] + photos, nil),
                Command("eval", ["eval", "--weights", v4, "--batch", "2", "--json", folder], nil),
            ]
        }
        var alone: [String: Data] = [:]
        for command in commands("one") {
            let result = try runInception(command.arguments + ["--threads", "2"])
            #expect(result.status == 0, "\(command.name): \(result.stderr)")
            alone[command.name] = try Self.outcome(command, result.stdout)
        }
        for ranks in [2, 3] {
            for command in commands("ranks\(ranks)") {
                let result = try MPI.run(ranks, command.arguments + ["--threads", "1"])
                #expect(result.status == 0, "\(command.name) on \(ranks) ranks: \(result.stderr)")
                let outcome = try Self.outcome(command, result.stdout)
                #expect(outcome == alone[command.name], "\(command.name) on \(ranks) ranks differs from one process")
                #expect(!outcome.isEmpty)
            }
        }
        // eval's skipped file is said once, by rank 0, as one process says it.
        let eval = try MPI.run(3, ["eval", "--weights", v4, "--threads", "1", folder])
        #expect(eval.stderr.components(separatedBy: "skipped ").count == 2, "\(eval.stderr)")
    }

    /// A command's name, its arguments, and the file it writes (nil: it prints).
    struct Command {
        let name: String, arguments: [String], output: String?
        init(_ name: String, _ arguments: [String], _ output: String?) {
            (self.name, self.arguments, self.output) = (name, arguments, output)
        }
    }

    /// The file written, or the JSON printed without the figures that time the run.
    static func outcome(_ command: Command, _ stdout: String) throws -> Data {
        if let output = command.output { return try Data(contentsOf: URL(fileURLWithPath: output)) }
        guard command.name == "eval" else { return Data(stdout.utf8) }
        var report = try #require(JSONSerialization.jsonObject(with: Data(stdout.utf8)) as? [String: Any])
        for key in ["seconds", "images_per_second"] { report[key] = nil }
        #expect((report["skipped"] as? Int) == 1 && (report["images"] as? Int ?? 0) > 0)
        return try JSONSerialization.data(withJSONObject: report, options: .sortedKeys)
    }

    /// An image that fails on rank 2 (the last shard) ends the job: rank 0 says it in one line naming the file, every
    /// rank stops, and there is no output file; a stream as the output is refused in one line.
    @Test func aRanksFailureIsOneLineAndNoOutput() throws {
        let scratch = try scratchDirectory("batch-job-failure")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let (photos, folder) = try Self.inputs(scratch)
        let face = try References.weights(.inceptionResNetV1FaceNet).path
        let output = scratch.appendingPathComponent("embed.npy").path
        let broken = folder + "/285/broken.jpg"
        let result = try MPI.run(3, ["embed", "--model", "inception_resnet_v1_facenet", "--no-detect", "--weights",
                                     face, "--threads", "1", "--output", output] + photos + [broken])
        let ours = result.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
        #expect(result.status != 0)
        #expect(ours.count == 1 && ours[0].contains("broken.jpg"), "\(result.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path) == ["folder"])
        let stream = try MPI.run(2, ["embed", "--model", "inception_resnet_v1_facenet", "--no-detect", "--weights",
                                     face, "--output", "-"] + photos)
        #expect(stream.status != 0 && stream.stdout.isEmpty, "\(stream.stdout.prefix(100))")
        #expect(stream.stderr.contains("error: --output - is a stream; under mpirun"), "\(stream.stderr)")
    }

    /// A rank killed mid-job: mpirun stops the others, rank 0 says so in one line, and no output (nor a temporary
    /// file) is left.
    @Test func aKilledRankLeavesNoOutput() throws {
        let scratch = try scratchDirectory("batch-job-killed")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let (photos, _) = try Self.inputs(scratch)
        let face = try References.weights(.inceptionResNetV1FaceNet).path
        let output = scratch.appendingPathComponent("killed.npy").path
        let process = Process()
        process.executableURL = try MPI.mpirun()
        process.arguments = MPI.launch(2) + [inceptionExecutable().path, "embed", "--model",
                                             "inception_resnet_v1_facenet", "--no-detect", "--weights", face,
                                             "--threads", "1",
                                             "--batch", "1", "--output", output]
            + Array(repeating: photos, count: 40).flatMap { $0 }
        let err = Pipe()
        (process.standardOutput, process.standardError) = (FileHandle.nullDevice, err)
        try process.run()
        // Rank 0 opens its temporary output once every rank has loaded the model: the job is under way.
        let deadline = Date().addingTimeInterval(120)
        func started() -> Bool {
            ((try? FileManager.default.contentsOfDirectory(atPath: scratch.path)) ?? []).contains {
                $0.hasPrefix(".killed.npy") || $0.hasPrefix("killed.npy.")
            }
        }
        while !started() && Date() < deadline && process.isRunning { usleep(100_000) }
        let rank1 = try #require(MPI.processOfRank(1, arguments: output), "rank 1 not found")
        kill(rank1, SIGKILL)
        process.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let ours = stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
        #expect(process.terminationStatus != 0)
        #expect(ours.count == 1 && ours[0].contains("stopped"), "\(stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path) == ["folder"])
    }

    /// Across two "hosts" — network namespaces joined by a veth pair, TCP only (scripts/netns_allreduce.sh, as the
    /// data-parallel training's measurement makes them): `embed` on 2 ranks equals one process's output.
    @Test(.enabled(if: geteuid() == 0, "ip netns needs root"))
    func twoHostsWriteWhatOneProcessWrites() throws {
        let result = try run(URL(fileURLWithPath: "/bin/bash"),
                             [repositoryRoot.appendingPathComponent("scripts/netns_allreduce.sh").path, "batch"])
        #expect(result.status == 0, "\(result.stdout.suffix(500)) \(result.stderr.suffix(1000))")
        #expect(result.stdout.contains("on 2 ranks equals one process's, byte for byte"), "\(result.stdout)")
    }
}
