import Foundation
import Inception
import InceptionIO
import InceptionReferences
import InceptionTestSupport
import Testing

/// PyTorch checkpoints written by torch.save itself (scripts/make_pytorch_checkpoints.py), read without Python:
/// every variant gives the logits of the same weights in safetensors — bitwise for float32, within the rounding of
/// the storage type for float16 and bfloat16 — and a pickle that calls anything else is refused without running.
@Suite(.serialized) struct PyTorchCheckpointTests {
    static let folder: URL = {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("pt-\(UUID().uuidString)")
        let script = repositoryRoot.appendingPathComponent("scripts/make_pytorch_checkpoints.py").path
        let reference = References.directory.appendingPathComponent("inception_v4/weights.safetensors").path
        _ = try? run(venvPython(), [script, reference, "inception_v4", folder.path])
        return folder
    }()

    static func logits(_ url: URL) throws -> Tensor {
        let model = try InceptionModel(.inceptionV4, weights: url)
        let image = try RGBImage(contentsOf: try Photos.imageURL("rocket.jpg"))
        return try model(nchw: ModelName.inceptionV4.spec.preprocessing.batch([image], inputSize: 139).nhwcToNCHW())
    }

    @Test(arguments: ["plain.pt", "wrapped.pth", "pytorch_model.bin", "strided.pt", "float16.pt", "bfloat16.pt",
                      "legacy.pt"])
    func loadsAsTheSafetensorsCheckpoint(_ file: String) throws {
        let url = Self.folder.appendingPathComponent(file)
        try #require(FileManager.default.fileExists(atPath: url.path), "torch.save did not write \(file)")
        let expected = try Self.logits(try References.weights(.inceptionV4))
        let got = try Self.logits(url)
        if file.hasPrefix("float16") || file.hasPrefix("bfloat16") {
            #expect(relativeError(got.scalars, expected.scalars) < (file.hasPrefix("b") ? 0.05 : 0.01))
        } else {
            #expect(got.scalars == expected.scalars)
        }
    }

    @Test func aPickleThatCallsAnythingElseIsRefusedAndNothingRuns() throws {
        let url = Self.folder.appendingPathComponent("evil.pt")
        try #require(FileManager.default.fileExists(atPath: url.path))
        #expect(throws: PyTorchError.inFile(path: url.path, .forbidden("posix.system"))) {
            _ = try InceptionModel(.inceptionV4, weights: url)
        }
        #expect(!FileManager.default.fileExists(atPath: Self.folder.appendingPathComponent("pwned").path))
        let image = try Photos.imageURL("rocket.jpg").path
        let cli = try runInception(["classify", "--weights", url.path, image])
        #expect(cli.status == 1 && cli.stderr == "error: \(url.path): PyTorch checkpoint calls posix.system, which "
                + "is not a "
                + "tensor rebuild; refused (nothing was run)\n", "\(cli.stderr)")
    }

    /// facenet-pytorch's own module's state dict, saved by torch.save in the zip and the legacy format (its released
    /// files are legacy): the embedding and logits bitwise those of the same weights in safetensors.
    @Test func facenetPytorchCheckpointsLoadInBothFormats() throws {
        let name = ModelName.inceptionResNetV1FaceNet
        let folder = try scratchDirectory("facenet-pt")
        defer { try? FileManager.default.removeItem(at: folder) }
        let script = repositoryRoot.appendingPathComponent("scripts/make_pytorch_checkpoints.py").path
        let made = try run(venvPython(), [script, try References.weights(name).path, name.rawValue, folder.path,
                                          "--only-module"])
        try #require(made.status == 0, "\(made.stderr)")
        let x = try References.tensor(name, "x_160.npy")
        let released = try References.model(name)
        for file in ["module.pt", "module-legacy.pt"] {
            let model = try InceptionModel(name, weights: folder.appendingPathComponent(file))
            for output: OutputName in [.embedding, .logits] {
                #expect(try model(nchw: x, output: output).scalars == (try released(nchw: x, output: output)).scalars,
                        "\(file) \(output)")
            }
        }
    }

    /// Archives the fuzzer found (Fuzz/corpus/torchfile/bad-*): a ZIP64 locator whose offset is past `Int64.max`,
    /// on which ZIPFoundation trapped (the process died on a signal), and an empty file, through which Foundation
    /// leaked a buffer. Each is one line, exit 1.
    @Test(arguments: ["bad-offset-past-int64.pt", "bad-empty.pt"])
    func archivesTheFuzzerFoundAreOneLine(_ file: String) throws {
        let url = repositoryRoot.appendingPathComponent("Fuzz/corpus/torchfile/\(file)")
        let image = try Photos.imageURL("rocket.jpg").path
        let cli = try runInception(["classify", "--weights", url.path, image])
        #expect(cli.status == 1 && cli.stderr.hasPrefix("error: ") && cli.stderr.split(separator: "\n").count == 1,
                "\(cli.status): \(cli.stderr)")
    }

    /// A checkpoint cut short, in either format, is one line naming the problem.
    @Test(arguments: ["plain.pt", "legacy.pt"])
    func aTruncatedCheckpointIsOneLine(_ file: String) throws {
        let whole = try Data(contentsOf: Self.folder.appendingPathComponent(file))
        let truncated = Self.folder.appendingPathComponent("truncated-\(file)")
        try whole.prefix(whole.count / 2).write(to: truncated)
        let broken = try runInception(["classify", "--weights", truncated.path,
                                       try Photos.imageURL("rocket.jpg").path])
        #expect(broken.status == 1 && broken.stderr.hasPrefix("error: ")
                && broken.stderr.split(separator: "\n").count == 1, "\(broken.stderr)")
    }

    /// Cadene's pretrainedmodels layout: 1001 classes with background at 0, and for Inception-ResNet-v2 the
    /// classifier under `last_linear`: the 1000 ImageNet logits are those of the released layout, bitwise, and the
    /// labels line up.
    @Test(arguments: [ModelName.inceptionV4, .inceptionResNetV2])
    func cadeneCheckpointsLoad(_ name: ModelName) throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cadene-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let script = repositoryRoot.appendingPathComponent("scripts/make_pytorch_checkpoints.py").path
        let reference = try References.weights(name)
        _ = try run(venvPython(), [script, reference.path, name.rawValue, folder.path, "--only-cadene"])
        let cadene = try InceptionModel(name, weights: folder.appendingPathComponent("cadene.pth"))
        let released = try InceptionModel(name, weights: reference)
        #expect(cadene.classes == 1001 && cadene.label(0).name == "background")
        let image = try RGBImage(contentsOf: try Photos.imageURL("rocket.jpg"))
        let x = name.spec.preprocessing.batch([image], inputSize: 139).nhwcToNCHW()
        #expect(Array(try cadene(nchw: x).scalars.dropFirst()) == (try released(nchw: x)).scalars)
        let labels = try released.classify([image], top: 3)[0].map(\.label)
        #expect(try cadene.classify([image], top: 3)[0].map(\.label) == labels)
    }

    @Test func convertWritesTheReleasedLayout() throws {
        let out = Self.folder.appendingPathComponent("converted.safetensors")
        let result = try runInception(["convert", Self.folder.appendingPathComponent("wrapped.pth").path, out.path])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try Self.logits(out).scalars == Self.logits(try References.weights(.inceptionV4)).scalars)
    }
}
