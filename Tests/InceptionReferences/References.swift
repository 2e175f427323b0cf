import Foundation
import Inception
import InceptionEngine
import InceptionIO
import InceptionTestSupport

/// Reference tensors written by `scripts/make_references.py` (timm, fresh random weights each CI run).
/// They are never committed; `scripts/test.sh` generates them before running the tests. A missing reference
/// fails the test: these comparisons are the point of the suite, never skipped.
package enum References {
    /// The face model's classes in the reference checkpoint (scripts/make_references.py, FACENET_CLASSES: VGGFace2's).
    package static let faceNetClasses = 8631

    package static let directory: URL = {
        if let dir = ProcessInfo.processInfo.environment["INCEPTION_REFERENCE_DIR"] {
            return URL(fileURLWithPath: dir)
        }
        // Tests/InceptionReferences/References.swift → the package root.
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".reference")
    }()

    package struct Missing: Error, CustomStringConvertible {
        package let path: String
        package init(path: String) { self.path = path }
        package var description: String {
            "reference file \(path) is missing: run scripts/test.sh (or scripts/make_references.py --out .reference)"
        }
    }

    package static func url(_ model: ModelName, _ file: String) throws -> URL {
        let url = directory.appendingPathComponent(model.rawValue).appendingPathComponent(file)
        guard FileManager.default.fileExists(atPath: url.path) else { throw Missing(path: url.path) }
        return url
    }

    package static func tensor(_ model: ModelName, _ file: String) throws -> Tensor {
        let (shape, values) = try NPY.read(contentsOf: try url(model, file))
        return Tensor(shape: shape, scalars: values)
    }

    package static func weights(_ model: ModelName) throws -> URL { try url(model, "weights.safetensors") }

    /// MTCNN's weights: the facenet_pytorch/data folder of the reference venv.
    package static func detectorWeights() throws -> URL {
        let venv = venvPython().deletingLastPathComponent().deletingLastPathComponent().path
        guard let folder = FaceDetector.weightsDirectory(environment: ["INCEPTION_VENV": venv]) else {
            throw Missing(path: "facenet_pytorch/data in the reference venv")
        }
        return folder
    }

    /// Loaded once per model and shared by the tests (loading is strict, so this also tests the loader).
    package static func model(_ name: ModelName) throws -> InceptionModel {
        try cache.withLock { cache in
            if let model = cache[name] { return model }
            let model = try InceptionModel(name, weights: try weights(name))
            cache[name] = model
            return model
        }
    }
    private static let cache = Locked<[ModelName: InceptionModel]>([:])

    /// Real photos at the network's input size: the first `n` of the references' preprocessed batch.
    package static func photos(_ name: ModelName, _ n: Int) throws -> Tensor {
        let x = name == .inceptionResNetV1FaceNet ? try References.tensor(name, "x_160.npy")
            : try References.tensor(.inceptionV4, "x_299.npy")
        let per = x.count / x.shape[0]
        return Tensor(shape: [n] + x.shape.dropFirst(), scalars: Array(x.scalars.prefix(n * per)))
    }

    /// `inception quantize` of the reference weights, calibrated on the reference photos (every format variant).
    package static func quantized(_ name: ModelName, into folder: URL) throws -> URL {
        let output = folder.appendingPathComponent("\(name.rawValue)-int8.safetensors")
        let cli = try runInception(["quantize", "--model", name.rawValue,
                                    "--weights", try References.weights(name).path,
                                    "--calibration", References.directory.appendingPathComponent("images").path,
                                    "--output", output.path])
        guard cli.status == 0 else { throw Failure(cli.stderr) }
        return output
    }

    /// The reference images split into two classes, in a scratch folder of its own: the test's runs go beside it
    /// (`data/../run-…`), and `removeScratch` deletes them all (each run writes about 0.5 GB of checkpoints).
    package static func dataset() throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("train-\(UUID().uuidString)/data")
        let images = References.directory.appendingPathComponent("images")
        guard let files = try? FileManager.default.contentsOfDirectory(atPath: images.path)
                .filter({ $0.hasSuffix(".png") || $0.hasSuffix(".jpg") }).sorted(),
              files.count >= 8 else { throw References.Missing(path: images.path) }
        for (i, file) in files.enumerated() {
            let folder = root.appendingPathComponent(i % 2 == 0 ? "cats" : "dogs")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: images.appendingPathComponent(file),
                                             to: folder.appendingPathComponent(file))
        }
        return root
    }

    package static func removeScratch(_ data: URL) {
        try? FileManager.default.removeItem(at: data.deletingLastPathComponent())
    }

    /// A file of the attacks folder (scripts/make_attacks.py).
    package static func attack(_ name: String) throws -> Data {
        let url = References.directory.appendingPathComponent("attacks").appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else { throw References.Missing(path: url.path) }
        return try Data(contentsOf: url)
    }
}

/// A new empty directory under the temporary directory, named `prefix-UUID`; the caller removes it.
package func scratchDirectory(_ prefix: String) throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

/// The `inception` executable built beside the test bundle.
package func inceptionExecutable() -> URL {
    let here = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for candidate in [here, here.deletingLastPathComponent()] {
        let url = candidate.appendingPathComponent("inception")
        if FileManager.default.isExecutableFile(atPath: url.path) { return url }
    }
    return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent(".build/release/inception")
}

/// Runs the CLI; returns (exit status, standard output, standard error).
package func runInception(_ arguments: [String], environment: [String: String] = [:]) throws
    -> (status: Int32, stdout: String, stderr: String)
{
    try run(inceptionExecutable(), arguments, environment: environment)
}

/// The repository root (for scripts/).
package let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// The reference venv's python (`INCEPTION_VENV`, default `.venv-ref`).
package func venvPython() -> URL {
    let venv = ProcessInfo.processInfo.environment["INCEPTION_VENV"].map { URL(fileURLWithPath: $0) }
        ?? repositoryRoot.appendingPathComponent(".venv-ref")
    return venv.appendingPathComponent("bin/python")
}

package func run(_ executable: URL, _ arguments: [String], environment: [String: String] = [:]) throws
    -> (status: Int32, stdout: String, stderr: String)
{
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Both pipes drain at once: a child that fills one while the other is read to its end would never finish.
    nonisolated(unsafe) var stderr = Data()
    let drained = DispatchSemaphore(value: 0)
    DispatchQueue.global().async {
        stderr = err.fileHandleForReading.readDataToEndOfFile()
        drained.signal()
    }
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    drained.wait()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
}
