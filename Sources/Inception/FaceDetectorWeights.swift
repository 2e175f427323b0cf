import Foundation
import InceptionHub

extension FaceDetector {
    static let weightFiles = ["pnet.pt", "rnet.pt", "onet.pt"]

    /// Where MTCNN's weights are, found without being told: `INCEPTION_DETECTOR_WEIGHTS`; else facenet-pytorch's
    /// `data` folder in a Python environment (`INCEPTION_VENV`, `VIRTUAL_ENV`, `~/.local`, `/usr/local`, `/usr`);
    /// else a snapshot in the Hugging Face cache of a repository that carries `pnet.pt`, `rnet.pt` and `onet.pt`.
    /// Nil when none holds all three.
    public static func weightsDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL? {
        let candidates = explicitAndPythonFolders(environment) + hubSnapshots(environment)
        return candidates.first { folder in
            weightFiles.allSatisfy { FileManager.default.fileExists(atPath: folder.appendingPathComponent($0).path) }
        }
    }

    static func explicitAndPythonFolders(_ environment: [String: String]) -> [URL] {
        let home = environment["HOME"] ?? NSHomeDirectory()
        let explicit = environment["INCEPTION_DETECTOR_WEIGHTS"].map { [URL(fileURLWithPath: $0)] } ?? []
        let prefixes = [environment["INCEPTION_VENV"], environment["VIRTUAL_ENV"], home + "/.local", "/usr/local",
                        "/usr"]
        let folders = prefixes.compactMap { $0 }.flatMap { prefix -> [URL] in
            let lib = URL(fileURLWithPath: prefix).appendingPathComponent("lib")
            let pythons = (try? FileManager.default.contentsOfDirectory(atPath: lib.path))?
                .filter { $0.hasPrefix("python3") }.sorted() ?? []
            return pythons.flatMap { python in
                ["site-packages", "dist-packages"].map {
                    lib.appendingPathComponent(python).appendingPathComponent($0)
                        .appendingPathComponent("facenet_pytorch/data")
                }
            }
        }
        return explicit + folders
    }

    static func hubSnapshots(_ environment: [String: String]) -> [URL] {
        let cache = HubClient(environment: environment).cacheDirectory
        let repositories = (try? FileManager.default.contentsOfDirectory(atPath: cache.path))?
            .filter { $0.hasPrefix("models--") }.sorted() ?? []
        return repositories.flatMap { repository -> [URL] in
            let snapshots = cache.appendingPathComponent(repository).appendingPathComponent("snapshots")
            let commits = (try? FileManager.default.contentsOfDirectory(atPath: snapshots.path))?.sorted() ?? []
            return commits.map { snapshots.appendingPathComponent($0) }
        }
    }
}
