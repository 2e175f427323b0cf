import Foundation
import Inception
import InceptionIO
import InceptionReferences
import InceptionTestSupport
import Testing

/// Issue #35: nothing a user passes crashes a command, and nothing it writes destroys what it should not — each
/// case of the issue's report, through the built command.
@Suite struct HostileCommandTests {
    static let face = ["--model", "inception_resnet_v1_facenet"]

    /// A scratch folder with a copy of the face model's reference weights and one preprocessed photo as npy.
    static func workspace() throws -> (dir: URL, weights: String, input: String) {
        let dir = try scratchDirectory("hostile-commands")
        let weights = dir.appendingPathComponent("face.safetensors")
        try FileManager.default.copyItem(at: try References.weights(.inceptionResNetV1FaceNet), to: weights)
        let input = dir.appendingPathComponent("x.npy")
        let made = try runInception(["preprocess"] + face + ["--output", input.path,
                                                              try Photos.imageURL("rocket.jpg").path])
        #expect(made.status == 0, "\(made.stderr)")
        return (dir, weights.path, input.path)
    }

    static func predict(_ weights: String, _ input: String, to output: String) throws
        -> (status: Int32, stdout: String, stderr: String)
    {
        try runInception(["predict"] + face + ["--weights", weights, "--input", input, "--output", output])
    }

    static func kind(_ path: String) -> mode_t {
        var info = stat()
        _ = lstat(path, &info)
        return info.st_mode & S_IFMT
    }

    /// A device node (made here, as root), a FIFO with a reader, a symbolic link and a 0600 file as --output: each
    /// gets the same bytes a plain file gets, and stays what it was.
    @Test func outputsKeepWhatIsAtTheirPath() throws {
        let (dir, weights, input) = try Self.workspace()
        defer { try? FileManager.default.removeItem(at: dir) }
        let plain = dir.appendingPathComponent("plain.npy").path
        #expect(try Self.predict(weights, input, to: plain).status == 0)
        let expected = try Data(contentsOf: URL(fileURLWithPath: plain))

        let fifo = dir.appendingPathComponent("pipe").path
        #expect(mkfifo(fifo, 0o600) == 0)
        let received = readFIFO(fifo)
        #expect(try Self.predict(weights, input, to: fifo).status == 0)
        #expect(received() == expected && Self.kind(fifo) == S_IFIFO)

        let target = dir.appendingPathComponent("target.npy").path, link = dir.appendingPathComponent("link").path
        try Data("old".utf8).write(to: URL(fileURLWithPath: target))
        #expect(chmod(target, 0o600) == 0 && symlink(target, link) == 0)
        #expect(try Self.predict(weights, input, to: link).status == 0)
        let written = try Data(contentsOf: URL(fileURLWithPath: target))
        #expect(Self.kind(link) == S_IFLNK && written == expected)
        var info = stat()
        #expect(stat(target, &info) == 0 && info.st_mode & 0o7777 == 0o600)

        let full = try Self.predict(weights, input, to: "/dev/full")
        #expect(full.status == 1
                && full.stderr == "error: cannot write npy file /dev/full: the disk or device is full\n")
        #expect(Self.kind("/dev/full") == S_IFCHR)
        guard geteuid() == 0 else { return }  // mknod needs root; the rest ran as any user
        let node = dir.appendingPathComponent("null").path
        #expect(mknod(node, S_IFCHR | 0o666, dev_t(1 << 8 | 3)) == 0)
        #expect(try Self.predict(weights, input, to: node).status == 0)
        #expect(Self.kind(node) == S_IFCHR)
    }

    /// A command never writes over what it reads: predict onto its weights, embed onto its photo, convert with its
    /// paths swapped, curves onto a run's checkpoint — refused before any work, the file untouched.
    @Test func outputsThatAreInputsAreRefused() throws {
        let (dir, weights, input) = try Self.workspace()
        defer { try? FileManager.default.removeItem(at: dir) }
        let before = try Data(contentsOf: URL(fileURLWithPath: weights))
        let photo = dir.appendingPathComponent("s.jpg")
        try FileManager.default.copyItem(at: try Photos.imageURL("rocket.jpg"), to: photo)
        let run = dir.appendingPathComponent("run")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        try Data().write(to: run.appendingPathComponent("metrics.jsonl"))
        let checkpoint = run.appendingPathComponent("model.safetensors").path
        try FileManager.default.copyItem(atPath: weights, toPath: checkpoint)
        let pt = dir.appendingPathComponent("face.pt").path
        try Data("a PyTorch file".utf8).write(to: URL(fileURLWithPath: pt))
        let cases: [([String], String)] = [
            (["predict"] + Self.face + ["--weights", weights, "--input", input, "--output", weights], weights),
            (["embed"] + Self.face + ["--weights", weights, "--output", photo.path, photo.path], photo.path),
            (["curves", run.path, "--output", checkpoint], checkpoint),
        ]
        for (arguments, output) in cases {
            let result = try runInception(arguments)
            #expect(result.status == 1 && result.stderr.hasPrefix("Error: --output \(output): it is also an input"),
                    "\(arguments): \(result.stderr)")
        }
        let swapped = try runInception(["convert"] + Self.face + [weights, pt])
        #expect(swapped.status == 1 && swapped.stderr.contains("swapped"), "\(swapped.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: weights)) == before)
        #expect(try Data(contentsOf: URL(fileURLWithPath: checkpoint)) == before)
        #expect(try String(contentsOfFile: pt, encoding: .utf8) == "a PyTorch file")
        #expect(try Data(contentsOf: photo) == Data(contentsOf: try Photos.imageURL("rocket.jpg")))
    }

    /// Pickles whose state dict wraps itself, or is wrapped 100 000 deep, written by torch.save itself: one line
    /// naming the file from convert and from --weights (a signal before).
    @Test func selfWrappingPicklesAreOneLine() throws {
        let dir = try scratchDirectory("hostile-pickles")
        defer { try? FileManager.default.removeItem(at: dir) }
        let script = """
            import sys, threading, torch
            sys.setrecursionlimit(1_000_000); threading.stack_size(512 << 20)
            out = sys.argv[1]
            d = {}; d['model'] = d; d['w'] = torch.zeros(2); torch.save(d, out + '/model.pt')
            d = {}; d['state_dict'] = d; torch.save(d, out + '/state_dict.pt')
            def deep():
                root = cur = {}
                for _ in range(100_000):
                    cur['model'] = {}; cur = cur['model']
                cur['w'] = torch.zeros(1); torch.save(root, out + '/deep.pt')
            t = threading.Thread(target=deep); t.start(); t.join()
            """
        let made = try run(venvPython(), ["-c", script, dir.path])
        #expect(made.status == 0, "\(made.stderr)")
        let photo = try Photos.imageURL("rocket.jpg").path
        for (name, reason) in [("model", "a state_dict or model entry that contains itself"),
                               ("state_dict", "a state_dict or model entry that contains itself"),
                               ("deep", "state_dict or model wrappers nested over 1000 deep")] {
            let file = dir.appendingPathComponent("\(name).pt").path
            let line = "error: \(file): PyTorch checkpoint is malformed: \(reason)\n"
            for arguments in [["convert", file, dir.appendingPathComponent("o.safetensors").path],
                              ["classify", "--weights", file, photo]] {
                let result = try runInception(arguments)
                #expect(result.status == 1 && result.stderr == line, "\(arguments): \(result.stderr)")
            }
        }
    }

    /// A sparse npy of 4 GB through predict: the input is read a batch at a time and the output written as it
    /// goes, so the process's peak memory stays far under the input's size; SIGTERM mid-way leaves no partial
    /// output file. Smaller batches give the same numbers.
    @Test func predictWorksThroughAnInputOfAnySizeInBatches() throws {
        let (dir, weights, input) = try Self.workspace()
        defer { try? FileManager.default.removeItem(at: dir) }
        let images = 13_000, big = dir.appendingPathComponent("big.npy").path
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(images), 3, 160, 160), }"
        header += String(repeating: " ", count: (64 - (10 + header.utf8.count + 1) % 64) % 64) + "\n"
        var head = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, UInt8(header.utf8.count & 0xFF),
                         UInt8(header.utf8.count >> 8)])
        head.append(contentsOf: Array(header.utf8))
        try head.write(to: URL(fileURLWithPath: big))
        #expect(truncate(big, off_t(head.count + images * 3 * 160 * 160 * 4)) == 0)

        let process = Process()
        process.executableURL = inceptionExecutable()
        process.arguments = ["predict"] + Self.face + ["--weights", weights, "--input", big, "--output",
                                                      dir.appendingPathComponent("out.npy").path]
        try process.run()
        // Until three batches of 8 embeddings (512 floats each) are written to the temporary output.
        let deadline = Date().addingTimeInterval(120)
        func written() -> Int {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
            return names.filter { $0.hasSuffix(".partial") }.compactMap {
                try? FileManager.default.attributesOfItem(atPath: dir.appendingPathComponent($0).path)[.size] as? Int
            }.max() ?? 0
        }
        while written() < 128 + 3 * 8 * 512 * 4 && Date() < deadline && process.isRunning { usleep(50_000) }
        let status = try String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)
        let peak = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }
            .flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? .max
        process.terminate()
        process.waitUntilExit()
        #expect(peak < 1_000_000, "peak \(peak) kB for a 4 GB input")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".partial") }
            .isEmpty)

        let five = dir.appendingPathComponent("five.npy").path
        let row = try NPY.read(contentsOf: URL(fileURLWithPath: input)).values
        try NPY.write(shape: [5, 3, 160, 160], values: (0..<5).flatMap { i in row.map { $0 * Float(i + 1) / 5 } },
                      to: URL(fileURLWithPath: five))
        var outputs: [[Float]] = []
        for batch in ["8", "2"] {
            let out = dir.appendingPathComponent("out-\(batch).npy").path
            let result = try runInception(["predict"] + Self.face + ["--weights", weights, "--input", five,
                                                                     "--output", out, "--batch", batch])
            #expect(result.status == 0, "\(result.stderr)")
            outputs.append(try NPY.read(contentsOf: URL(fileURLWithPath: out)).values)
        }
        #expect(outputs[0].count == 5 * 512)
        #expect(zip(outputs[0], outputs[1]).allSatisfy { abs($0 - $1) <= 1e-6 })
    }

    /// Sixteen 6000 × 6000 photos in one embed: each is decoded and brought to the network's size before the next,
    /// so memory holds one photo, not a batch of eight (peak measured by the parent's getrusage).
    @Test func largePhotosAreDecodedOneAtATime() throws {
        let dir = try scratchDirectory("hostile-photos")
        defer { try? FileManager.default.removeItem(at: dir) }
        let photo = dir.appendingPathComponent("big.jpg").path
        let script = """
            import resource, subprocess, sys
            from PIL import Image
            Image.new('RGB', (6000, 6000), (90, 120, 150)).save(sys.argv[1], quality=60)
            r = subprocess.run(sys.argv[2:], capture_output=True)
            print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
            """
        let weights = try References.weights(.inceptionResNetV1FaceNet).path
        let output = dir.appendingPathComponent("e.npy").path
        let result = try run(venvPython(), ["-c", script, photo, inceptionExecutable().path, "embed"] + Self.face
                             + ["--no-detect", "--weights", weights, "--output", output]
                             + Array(repeating: photo, count: 16))
        let fields = result.stdout.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        #expect(fields.first == 0, "\(result.stdout) \(result.stderr)")
        #expect(try NPY.read(contentsOf: URL(fileURLWithPath: output)).shape == [16, 512])
        // One decoded photo is 108 MB; a batch of eight, 864 MB.
        #expect((fields.last ?? .max) < 700_000, "peak \(fields.last ?? 0) kB")
    }
}

/// Issue #35: every number a user passes is checked before any work, in one place and by one rule per flag; every
/// error a user can reach is one line in the project's words.
@Suite struct FlagAndMessageTests {
    /// Each case once crashed (signal 4, 6 or 11), was taken silently, or printed a Swift dump. Now: one line
    /// naming the flag, exit 1, and no folder made.
    @Test func flagsOutOfRangeAreOneLineBeforeAnyWork() throws {
        let dir = try scratchDirectory("hostile-flags")
        defer { try? FileManager.default.removeItem(at: dir) }
        let photo = try Photos.imageURL("rocket.jpg").path
        let out = dir.appendingPathComponent("o.npy").path, run = dir.appendingPathComponent("run").path
        let train = ["train", "--model", "inception_resnet_v1", "--data", dir.path, "--output", run]
        let cases: [([String], String)] = [
            (["preprocess", "--input-size", "0", photo, "--output", out], "--input-size must be from 75"),
            (["preprocess", "--input-size", "100000", photo, "--output", out], "--input-size must be from 75"),
            (["bench", "--input-size", "100000"], "--input-size must be from 75"),
            (train + ["--input-size", "100000"], "--input-size must be from 75"),
            (["eval", "--limit=-3", dir.path], "--limit must be at least 1, not -3"),
            (["eval", "--limit", "0", dir.path], "--limit must be at least 1, not 0"),
            (["bench", "--batch", "100000"], "--batch must be from 1 to 4096, not 100000"),
            (["classify", "--batch", "0", photo], "--batch must be from 1 to 4096, not 0"),
            (["embed", "--batch", "0", "--output", out, photo], "--batch must be from 1 to 4096, not 0"),
            (["eval", "--batch", "0", dir.path], "--batch must be from 1 to 4096, not 0"),
            (train + ["--average-decay", "2"], "--average-decay must be a number above 0 and below 1, not 2.0"),
            (train + ["--dropout", "2"], "--dropout must be a number at least 0 and below 1, not 2.0"),
            (train + ["--clip-norm=-1"], "--clip-norm must be a number above 0, not -1.0"),
            (train + ["--weight-decay=-1"], "--weight-decay must be a number at least 0, not -1.0"),
            (train + ["--lr-factor", "0"], "--lr-factor must be a number above 0 and at most 1, not 0.0"),
            (train + ["--lr-every=-1"], "--lr-every must be a number above 0, not -1.0"),
            (train + ["--batch-norm-momentum", "5"], "--batch-norm-momentum must be a number above 0 and at most 1"),
            (train + ["--lr", "nan"], "--lr must be a number above 0, not nan"),
            (["train", "--data", dir.path, "--output", photo], "--output \(photo) is a file; a run is written to a"),
        ]
        for (arguments, message) in cases {
            let result = try runInception(arguments)
            #expect(result.status == 1 && result.stderr.hasPrefix("Error: \(message)")
                    && result.stderr.split(separator: "\n").count == 1, "\(arguments): \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: run) && !FileManager.default.fileExists(atPath: out))
        }
    }

    /// Sizes within the flags' ranges that cannot fit in this machine's memory: one line with what they need and
    /// what is left, before the allocation (a Fatal error in the allocator before).
    @Test func aBatchTooLargeForMemoryIsOneLine() throws {
        let result = try runInception(["bench", "--batch", "4096", "--runs", "1", "--warmup", "0"])
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.hasPrefix("error: a forward pass of 4096 images at 299×299 needs ")
                && result.stderr.contains("lower --batch or --input-size"), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1)
    }

    /// Messages that were Foundation error domains, decoder dumps or 50 KB lines.
    @Test func errorsAreOneLineInWords() throws {
        let dir = try scratchDirectory("hostile-messages")
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try References.weights(.inceptionResNetV1FaceNet).path
        let face = ["--model", "inception_resnet_v1_facenet"]
        let photo = try Photos.imageURL("rocket.jpg").path
        let file = dir.appendingPathComponent("a-file").path
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        // A safetensors entry without dtype, and an npy that claims 20 000 dimensions (its header is 60 KB, within
        // the 64 KB NumPy's own reader would need a flag for).
        let header = #"{"a":{"shape":[1],"data_offsets":[0,4]}}"#
        var safetensors = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { Data($0) }
        safetensors.append(contentsOf: Array(header.utf8) + [0, 0, 0, 0])
        let bad = dir.appendingPathComponent("bad.safetensors")
        try safetensors.write(to: bad)
        var npyHeader = "{'descr': '<f4', 'fortran_order': False, 'shape': ("
            + Array(repeating: "1", count: 20_000).joined(separator: ", ") + "), }"
        npyHeader += String(repeating: " ", count: (64 - (12 + npyHeader.utf8.count + 1) % 64) % 64) + "\n"
        var npy = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 2, 0])
        withUnsafeBytes(of: UInt32(npyHeader.utf8.count).littleEndian) { npy.append(contentsOf: $0) }
        npy.append(contentsOf: Array(npyHeader.utf8) + [0, 0, 0, 0])
        let long = dir.appendingPathComponent("long.npy")
        try npy.write(to: long)
        let unreadable = dir.appendingPathComponent("val/n01440764")
        try FileManager.default.createDirectory(at: unreadable, withIntermediateDirectories: true)
        try Data("not an image".utf8).write(to: unreadable.appendingPathComponent("a.jpg"))
        let cases: [([String], String)] = [
            (["export"] + face + ["--weights", weights, "--output", "/nonexistent/m.onnx"],
             "error: cannot write /nonexistent/m.onnx: the folder /nonexistent does not exist"),
            (["export"] + face + ["--weights", weights, "--output", file + "/m.onnx"],
             "error: cannot write \(file)/m.onnx: \(file) is not a folder"),
            (["classify"] + face + ["--weights", bad.path, photo], "error: safetensors header is not valid JSON: "
             + "entry 'a' has no 'dtype'"),
            (["predict"] + face + ["--weights", weights, "--input", long.path, "--output", file + ".npy"],
             "error: input must have shape (N, 3, H, W), got [1, 1, 1"),
            (["eval", "--weights", try References.weights(.inceptionV4).path, dir.appendingPathComponent("val").path],
             "skipped "),
        ]
        for (arguments, message) in cases {
            let result = try runInception(arguments)
            #expect(result.status == 1 && result.stderr.hasPrefix(message), "\(arguments): \(result.stderr)")
            let lines = result.stderr.split(separator: "\n")
            #expect(lines.allSatisfy { $0.count <= 300 } && !result.stderr.contains("Domain")
                    && !result.stderr.contains("Keys("), "\(result.stderr)")
        }
        let none = try runInception(["eval", "--weights", try References.weights(.inceptionV4).path,
                                     dir.appendingPathComponent("val").path])
        #expect(none.stderr.hasSuffix("error: no image in \(dir.path)/val could be evaluated (1 unreadable)\n"))
    }
}
