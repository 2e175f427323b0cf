import Foundation
import Inception
import InceptionIO
@_exported import InceptionTestSupport
import Testing

/// Reference tensors written by `scripts/make_references.py` (timm, fresh random weights each CI run).
/// They are never committed; `scripts/test.sh` generates them before running the tests. A missing reference
/// fails the test: these comparisons are the point of the suite, never skipped.
enum References {
    /// The face model's classes in the reference checkpoint (scripts/make_references.py, FACENET_CLASSES: VGGFace2's).
    static let faceNetClasses = 8631

    static let directory: URL = {
        if let dir = ProcessInfo.processInfo.environment["INCEPTION_REFERENCE_DIR"] {
            return URL(fileURLWithPath: dir)
        }
        // Tests/InceptionModelTests/References.swift → the package root.
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".reference")
    }()

    struct Missing: Error, CustomStringConvertible {
        let path: String
        var description: String {
            "reference file \(path) is missing: run scripts/test.sh (or scripts/make_references.py --out .reference)"
        }
    }

    static func url(_ model: ModelName, _ file: String) throws -> URL {
        let url = directory.appendingPathComponent(model.rawValue).appendingPathComponent(file)
        guard FileManager.default.fileExists(atPath: url.path) else { throw Missing(path: url.path) }
        return url
    }

    static func tensor(_ model: ModelName, _ file: String) throws -> Tensor {
        let (shape, values) = try NPY.read(contentsOf: try url(model, file))
        return Tensor(shape: shape, scalars: values)
    }

    static func weights(_ model: ModelName) throws -> URL { try url(model, "weights.safetensors") }

    /// Loaded once per model and shared by the tests (loading is strict, so this also tests the loader).
    static func model(_ name: ModelName) throws -> InceptionModel {
        try cache.withLock { cache in
            if let model = cache[name] { return model }
            let model = try InceptionModel(name, weights: try weights(name))
            cache[name] = model
            return model
        }
    }
    private static let cache = Locked<[ModelName: InceptionModel]>([:])
}



/// A new empty directory under the temporary directory, named `prefix-UUID`; the caller removes it.
func scratchDirectory(_ prefix: String) throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

/// The `inception` executable built beside the test bundle.
func inceptionExecutable() -> URL {
    let here = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for candidate in [here, here.deletingLastPathComponent()] {
        let url = candidate.appendingPathComponent("inception")
        if FileManager.default.isExecutableFile(atPath: url.path) { return url }
    }
    return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent(".build/release/inception")
}

/// Runs the CLI; returns (exit status, standard output, standard error).
func runInception(_ arguments: [String], environment: [String: String] = [:]) throws
    -> (status: Int32, stdout: String, stderr: String)
{
    try run(inceptionExecutable(), arguments, environment: environment)
}

/// The repository root (for scripts/).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// The reference venv's python (`INCEPTION_VENV`, default `.venv-ref`).
func venvPython() -> URL {
    let venv = ProcessInfo.processInfo.environment["INCEPTION_VENV"].map { URL(fileURLWithPath: $0) }
        ?? repositoryRoot.appendingPathComponent(".venv-ref")
    return venv.appendingPathComponent("bin/python")
}

func run(_ executable: URL, _ arguments: [String], environment: [String: String] = [:]) throws
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
