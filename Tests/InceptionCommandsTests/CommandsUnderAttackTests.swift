import Foundation
import Inception
import InceptionIO
import InceptionReferences
import InceptionTestSupport
import Testing

/// Issue #46: the commands added for the paper's protocols (verify, compare, crops, ensembles) and the output writer,
/// as a hostile user tried them at a383341 — each case of the report through the built command (or, where the
/// command cannot be timed against another process, the library call it makes).
@Suite struct CommandsUnderAttackTests {
    static let face = ["--model", "inception_resnet_v1_facenet"]

    /// A scratch folder: random face weights (`init`), a photo, and an LFW-like folder of two people.
    static func workspace(_ name: String) throws -> (dir: URL, weights: String, photo: String) {
        let dir = try scratchDirectory(name)
        let weights = dir.appendingPathComponent("face.safetensors").path
        let made = try runInception(["init"] + face + ["--output", weights])
        #expect(made.status == 0, "\(made.stderr)")
        let photo = dir.appendingPathComponent("rocket.jpg").path
        try FileManager.default.copyItem(at: try Photos.imageURL("rocket.jpg"), to: URL(fileURLWithPath: photo))
        for person in ["alice", "bob"] {
            let folder = dir.appendingPathComponent("lfw/\(person)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for i in 1...3 {
                try FileManager.default.copyItem(atPath: photo,
                                                 toPath: folder.appendingPathComponent("\(person)_000\(i).jpg").path)
            }
        }
        return (dir, weights, photo)
    }

    /// A shell command line (for `ulimit` and redirections), its status and standard error.
    static func shell(_ line: String, in dir: URL) throws -> (status: Int32, stdout: String, stderr: String) {
        try run(URL(fileURLWithPath: "/bin/sh"), ["-c", "cd '\(dir.path)' && \(line)"])
    }

    static var inception: String { inceptionExecutable().path }
    /// `inception SUBCOMMAND` on the face model, for a shell line.
    static func faceCommand(_ subcommand: String) -> String {
        "'\(inception)' \(subcommand) \(face.joined(separator: " "))"
    }

    /// Case 1: `preprocess --crops 144` at a large input size kept all 144 views (29 GB at 4096: killed, or SIGABRT
    /// under an address-space limit); the memory check read physical memory and the cgroup only. Now the views
    /// stream one at a time (a 3 GB address-space limit holds 144 views at 1536², which needed 4 GB of floats), and
    /// a forward pass that cannot fit under `ulimit -v` is one line (a 4000² input needs 5 GB).
    @Test func viewsStreamAndTheAddressSpaceLimitCounts() throws {
        let (dir, weights, photo) = try Self.workspace("attack-memory")
        defer { try? FileManager.default.removeItem(at: dir) }
        let views = try Self.shell("ulimit -v 3000000 && \(Self.faceCommand("preprocess")) "
                                   + "--crops 144 --input-size 1536 --output /dev/null '\(photo)'", in: dir)
        #expect(views.status == 0, "\(views.stderr)")
        let big = dir.appendingPathComponent("big.npy").path
        try NPY.write(shape: [1, 3, 4000, 4000], values: [Float](repeating: 0.5, count: 3 * 4000 * 4000),
                      to: URL(fileURLWithPath: big))
        let predict = try Self.shell("ulimit -v 3000000 && \(Self.faceCommand("predict")) "
                                     + "--weights '\(weights)' --input '\(big)' --output out.npy", in: dir)
        #expect(predict.status == 1 && predict.stderr.contains("needs") && predict.stderr.contains("address-space")
                && predict.stderr.split(separator: "\n").count == 1, "\(predict.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("out.npy").path))
    }

    /// Case 2: a mapped npy that another process shrank ended `predict` with SIGBUS. The reader reads by offset
    /// now: a shrunk file is one line (the library, deterministic; and the command, truncated while it runs: one
    /// line whichever read meets the change, exit 1, no partial file).
    @Test func aShrunkInputIsOneLine() throws {
        let (dir, weights, _) = try Self.workspace("attack-shrunk")
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("x.npy")
        try NPY.write(shape: [120, 3, 160, 160], values: (0..<120 * 3 * 160 * 160).map { Float($0 % 7) / 7 },
                      to: input)
        let reader = try NPY.Reader(contentsOf: input)
        #expect(truncate(input.path, 1_000_000) == 0)
        #expect(throws: NPYError.changed(path: input.path)) { try reader.values(100..<101) }
        try NPY.write(shape: [120, 3, 160, 160], values: (0..<120 * 3 * 160 * 160).map { Float($0 % 7) / 7 },
                      to: input)
        let result = try Self.shell("(\(Self.faceCommand("predict")) --weights "
                                    + "'\(weights)' --input x.npy --batch 1 --output out.npy & sleep 2; "
                                    + "truncate -s 1000000 x.npy; wait $!)", in: dir)
        #expect(result.status == 1 && result.stderr.contains("npy") && !result.stderr.contains("Fatal")
                && result.stderr.split(separator: "\n").filter { !$0.hasPrefix("measuring") }.count == 1,
                "\(result.stderr)")
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        #expect(!left.contains("out.npy") && !left.contains { $0.hasSuffix(".partial") }, "\(left)")
    }

    /// Case 3: `verify --roc` onto one of its images and `quantize --output` onto a calibration image replaced
    /// them (exit 0); `--output /dev/stdout` appended to a log replaced the log. Now refused naming the flag, the
    /// files intact; the process's own streams are written straight through.
    @Test func noInputIsReplacedByAnOutput() throws {
        let (dir, weights, photo) = try Self.workspace("attack-inputs")
        defer { try? FileManager.default.removeItem(at: dir) }
        let original = try Data(contentsOf: URL(fileURLWithPath: photo))
        try "alice 1 2\nalice 1 bob 1\n".write(to: dir.appendingPathComponent("pairs.txt"), atomically: true,
                                                 encoding: .utf8)
        let image = dir.appendingPathComponent("lfw/alice/alice_0001.jpg").path
        let verify = try runInception(["verify", "--no-detect", "--weights", weights, "--pairs",
                                       dir.appendingPathComponent("pairs.txt").path, "--images",
                                       dir.appendingPathComponent("lfw").path, "--roc", image])
        #expect(verify.status == 1 && verify.stderr.contains("--roc \(image): it is also an input"),
                "\(verify.stderr)")
        let calibration = dir.appendingPathComponent("lfw/bob/bob_0002.jpg").path
        let quantize = try runInception(["quantize"] + Self.face + ["--weights", weights, "--calibration",
                                                                      dir.appendingPathComponent("lfw").path,
                                                                      "--output", calibration, "--limit", "1"])
        #expect(quantize.status == 1 && quantize.stderr.contains("--output \(calibration): it is also an input"),
                "\(quantize.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: image)) == original)
        #expect(try Data(contentsOf: URL(fileURLWithPath: calibration)) == original)
        for stream in ["/dev/stdout", "/proc/self/fd/1"] {
            try "earlier\n".write(to: dir.appendingPathComponent("log"), atomically: false, encoding: .utf8)
            let appended = try Self.shell("\(Self.faceCommand("preprocess")) "
                                          + "--output \(stream) rocket.jpg >> log", in: dir)
            let log = try Data(contentsOf: dir.appendingPathComponent("log"))
            #expect(appended.status == 0 && log.starts(with: Data("earlier\n".utf8) + [0x93] + Data("NUMPY".utf8))
                    && log.count == 8 + 128 + 4 * 3 * 160 * 160, "\(stream): \(appended.stderr) \(log.count)")
        }
    }

    /// Cases 4 and 5: pair names that leave the image folder, files saved on Windows or an old Mac, a header that
    /// lies, `--roc -` beside `--json`, and a `--roc` path that cannot be written (found only after embedding).
    @Test func pairsFilesAsPeopleHaveThem() throws {
        let lf = "alice 1 2\nalice 1 bob 3\n"
        let expected = try PairsFile.parse(lf, images: "/faces")
        for text in [lf.replacingOccurrences(of: "\n", with: "\r\n"), lf.replacingOccurrences(of: "\n", with: "\r"),
                     "\u{FEFF}" + lf, "\u{FEFF}" + lf.replacingOccurrences(of: "\n", with: "\r\n"),
                     "1 1\r\n" + lf] {
            #expect(try PairsFile.parse(text, images: "/faces") == expected, "\(Array(text.utf8))")
        }
        for (name, line) in [("../outside", "../outside 1 2"), ("..", ".. 1 2"), ("a/b", "alice 1 a/b 2"),
                             ("x\0y", "x\0y 1 2")] {
            #expect(throws: VerificationError.badName(1, name)) { try PairsFile.parse(line, images: "/faces") }
        }
        #expect(throws: VerificationError.headerMismatch(folds: 10, pairs: 300, lines: 2)) {
            try PairsFile.parse("10 300\n" + lf, images: "/faces")
        }
        #expect(throws: VerificationError.headerMismatch(folds: -1, pairs: 2, lines: 0)) {
            try PairsFile.parse("-1 2\n" + lf, images: "/faces")
        }
        #expect(throws: VerificationError.headerMismatch(folds: .max, pairs: .max, lines: 2)) {
            try PairsFile.parse("\(Int.max) \(Int.max)\n" + lf, images: "/faces")
        }
        let (dir, weights, _) = try Self.workspace("attack-pairs")
        defer { try? FileManager.default.removeItem(at: dir) }
        let pairs = dir.appendingPathComponent("pairs.txt").path
        try "../outside 1 2\n".write(toFile: pairs, atomically: true, encoding: .utf8)
        let verify = ["verify", "--no-detect", "--weights", weights, "--pairs", pairs, "--images",
                      dir.appendingPathComponent("lfw").path]
        let outside = try runInception(verify)
        #expect(outside.status == 1 && outside.stderr.contains("pairs line 1: '../outside' is not a person's name"),
                "\(outside.stderr)")
        try lf.write(toFile: pairs, atomically: true, encoding: .utf8)
        let both = try runInception(verify + ["--roc", "-", "--json"])
        #expect(both.status == 1 && both.stderr == "Error: --json prints to standard output: give --roc a file\n")
        let nowhere = try runInception(["verify", "--weights", "/no/weights", "--pairs", pairs, "--images",
                                        dir.appendingPathComponent("lfw").path, "--roc", "/no/folder/roc.svg"])
        #expect(nowhere.status == 1 && nowhere.stderr.contains("/no/folder/roc.svg: the folder /no/folder does not "
                                                               + "exist"), "\(nowhere.stderr)")
    }

    /// Case 6: a pairs file of blank lines took ~50 × its size (60 MB: 2.9 GB), an ensemble of one file 20 times
    /// loaded 20 copies. Now both run under a 2 GB address-space limit; and the threshold scan, sorted once, gives
    /// facenet's figures exactly (against a pass over the pairs per threshold, written here).
    @Test func memoryDoesNotGrowWithRepeats() throws {
        let (dir, weights, photo) = try Self.workspace("attack-repeats")
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data(repeating: 10, count: 60_000_000).write(to: dir.appendingPathComponent("blank.txt"))
        let blank = try Self.shell("ulimit -v 2000000 && '\(Self.inception)' verify --weights '\(weights)' --pairs "
                                   + "blank.txt --images lfw", in: dir)
        #expect(blank.status == 1 && blank.stderr.hasSuffix("error: 0 pairs are too few for 10 folds (at least 10)\n"),
                "\(blank.stderr)")
        let classes = dir.appendingPathComponent("face2.safetensors").path
        #expect(try runInception(["init"] + Self.face + ["--classes", "2", "--output", classes]).status == 0)
        for label in ["0", "1"] {
            let folder = dir.appendingPathComponent("eval/\(label)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: photo, toPath: folder.appendingPathComponent("a.jpg").path)
        }
        let members = Array(repeating: "--weights '\(classes)'", count: 20).joined(separator: " ")
        let ensemble = try Self.shell("ulimit -v 2000000 && '\(Self.inception)' eval \(members) --json eval", in: dir)
        #expect(ensemble.status == 0 && ensemble.stdout.contains("\"images\" : 2"), "\(ensemble.stderr)")

        var generator = SystemRandomNumberGenerator()
        let distances = (0..<3000).map { _ in Double(Int.random(in: 0...800, using: &generator)) / 200 }
            + [.nan, .nan]
        let same = distances.indices.map { _ in Bool.random(using: &generator) }
        let fast = try Verification(distances: distances, same: same)
        let naive = Self.naiveThresholds(distances, same)
        #expect(fast.thresholds == naive.thresholds && fast.vals == naive.vals && fast.fars == naive.fars)
    }

    /// facenet's per-fold thresholds as a pass over the training pairs for each threshold (the scan before #46).
    static func naiveThresholds(_ d: [Double], _ same: [Bool]) -> (thresholds: [Double], vals: [Double],
                                                                   fars: [Double]) {
        func rates(_ t: Double, _ pairs: [Int]) -> (accuracy: Double, val: Double, far: Double) {
            let s = pairs.filter { same[$0] }, o = pairs.filter { !same[$0] }
            let ta = s.filter { d[$0] < t }.count, fa = o.filter { d[$0] < t }.count
            return (Double(ta + o.count - fa) / Double(pairs.count), s.isEmpty ? 0 : Double(ta) / Double(s.count),
                    o.isEmpty ? 0 : Double(fa) / Double(o.count))
        }
        var result: (thresholds: [Double], vals: [Double], fars: [Double]) = ([], [], [])
        let grid = (0..<400).map { Double($0) / 100 }, fine = (0..<4000).map { Double($0) / 1000 }
        var start = 0
        for k in 0..<10 {
            let size = d.count / 10 + (k < d.count % 10 ? 1 : 0)
            let test = Array(start..<start + size), train = d.indices.filter { $0 < start || $0 >= start + size }
            start += size
            let accuracy = grid.map { rates($0, train).accuracy }
            result.thresholds.append(grid[accuracy.firstIndex(of: accuracy.max()!)!])
            let far = threshold(fine.map { ($0, rates($0, train).far) })
            result.vals.append(rates(far, test).val)
            result.fars.append(rates(far, test).far)
        }
        return result
    }

    /// facenet's interpolation of the threshold at FAR 1e-3 between its neighbours on the grid (0 when none reaches
    /// it), as docs/evaluation.md states it.
    static func threshold(_ curve: [(t: Double, far: Double)]) -> Double {
        let target = 1e-3
        guard curve.contains(where: { $0.far >= target }) else { return 0 }
        let below = curve.filter { $0.far <= target }.max { ($0.far, $0.t) < ($1.far, $1.t) }
        let above = curve.filter { $0.far > target }.min { ($0.far, $0.t) < ($1.far, $1.t) }
        guard let below else { return above!.t }
        guard let above, below.far < target else { return below.t }
        return below.t + (target - below.far) * (above.t - below.t) / (above.far - below.far)
    }

    /// Case 7: values ArgumentParser refuses printed four lines with exit 64, and a negative number after a space
    /// was "a missing value". Every refusal is one line, exit 1.
    @Test func parserRefusalsAreOneLine() throws {
        let cases: [([String], String)] = [
            (["eval", "--crops", "2", "x"], "Error: The value '2' is invalid for --crops."),
            (["eval", "--average", "x", "y"], "Error: The value 'x' is invalid for --average."),
            (["eval", "--limit", "99999999999999999999", "x"], "Error: The value '99999999999999999999' is invalid"),
            (["classify", "--batch", "abc", "x"], "Error: The value 'abc' is invalid for --batch"),
            (["compare", "--threshold", "-1", "a", "b"], "Error: --threshold must be a distance of 0 or more"),
            (["eval", "--limit", "-3", "x"], "Error: --limit must be at least 1, not -3"),
            (["nosuch"], "Error: Unexpected argument 'nosuch'"),
        ]
        for (arguments, prefix) in cases {
            let result = try runInception(arguments)
            #expect(result.status == 1 && result.stderr.hasPrefix(prefix)
                    && result.stderr.split(separator: "\n").count == 1, "\(arguments): \(result.stderr)")
        }
        #expect(try runInception(["--version"]).status == 0)
    }

    /// Case 8: the hidden `.NAME.PID.TAG.partial` a killed writer leaves stayed forever. A later writer of the same
    /// output removes those whose process is gone, and leaves a live writer's.
    @Test func abandonedPartialFilesAreRemoved() throws {
        let (dir, _, photo) = try Self.workspace("attack-partials")
        defer { try? FileManager.default.removeItem(at: dir) }
        let dead = dir.appendingPathComponent(".out.npy.999999999.abc.partial").path
        let live = dir.appendingPathComponent(".out.npy.\(getpid()).def.partial").path
        for path in [dead, live] { try Data("partial".utf8).write(to: URL(fileURLWithPath: path)) }
        let output = dir.appendingPathComponent("out.npy").path
        let result = try runInception(["preprocess"] + Self.face + ["--output", output, photo])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dead) && FileManager.default.fileExists(atPath: live))
    }
}
