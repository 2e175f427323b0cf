import Foundation
import InceptionEngine
import InceptionIO

/// An image-classification data set on disk: one sub-folder per class, named by WordNet id (`n01440764`) or by
/// class index (`0` … `999`); JPEG and PNG files inside, found by extension, in sorted order.
public struct ImageFolder: Sendable {
    public struct Sample: Sendable, Equatable {
        public let path: String
        /// Index into ImageNet-1k's classes (timm's order), before any 1001-class background shift.
        public let label: Int
    }

    public let root: String
    public let samples: [Sample]
    /// With `classFolders`, the class names in label order; nil for ImageNet labelling.
    public let classNames: [String]?

    /// A folder labelled by its own class folders, as torchvision's `ImageFolder`: label i is the i-th of
    /// `classes` (default: the sub-folder names, sorted). Pass the training set's classes to a validation set.
    public init(_ root: String, classes: [String]?) throws {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: root, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DatasetError.notADirectory(root)
        }
        let folders = try fm.contentsOfDirectory(atPath: root).sorted().filter {
            fm.fileExists(atPath: (root as NSString).appendingPathComponent($0), isDirectory: &isDirectory)
                && isDirectory.boolValue
        }
        let names = classes ?? folders
        let index = Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, $0) })
        var samples: [Sample] = []
        for folder in folders {
            guard let label = index[folder] else { throw DatasetError.classNotInTraining(folder) }
            let path = (root as NSString).appendingPathComponent(folder)
            for file in try fm.contentsOfDirectory(atPath: path).sorted()
            where ["jpg", "jpeg", "png"].contains((file as NSString).pathExtension.lowercased()) {
                samples.append(Sample(path: (path as NSString).appendingPathComponent(file), label: label))
            }
        }
        guard !samples.isEmpty else { throw DatasetError.noImages(root) }
        (self.root, self.samples, self.classNames) = (root, samples, names)
    }

    public init(_ root: String) throws {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: root, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DatasetError.notADirectory(root)
        }
        let wordNet = Dictionary(uniqueKeysWithValues: imageNetClasses.enumerated().map { ($1.wordNetID, $0) })
        var samples: [Sample] = []
        for folder in try fm.contentsOfDirectory(atPath: root).sorted() {
            let path = (root as NSString).appendingPathComponent(folder)
            guard fm.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else { continue }
            guard let label = wordNet[folder] ?? Int(folder) else { throw DatasetError.unknownClassFolder(folder) }
            for file in try fm.contentsOfDirectory(atPath: path).sorted()
            where ["jpg", "jpeg", "png"].contains((file as NSString).pathExtension.lowercased()) {
                samples.append(Sample(path: (path as NSString).appendingPathComponent(file), label: label))
            }
        }
        guard !samples.isEmpty else { throw DatasetError.noImages(root) }
        self.root = root
        self.samples = samples
        self.classNames = nil
    }
}

extension ImageFolder {
    /// Each image whose file cannot be read, is not a JPEG or PNG, has a malformed header or ends before its image
    /// data (`ImageHeader`), with its one-line reason; a pass over every file's header and end, without decoding.
    public func unreadableImages() -> [(path: String, reason: String)] {
        samples.compactMap { sample in
            do { _ = try ImageHeader(contentsOf: URL(fileURLWithPath: sample.path)); return nil } catch {
                return (sample.path, "\(error)")
            }
        }
    }

    /// The same folder without the images at `paths`.
    public func removing(_ paths: Set<String>) -> ImageFolder {
        ImageFolder(root: root, samples: samples.filter { !paths.contains($0.path) }, classNames: classNames)
    }

    private init(root: String, samples: [Sample], classNames: [String]?) {
        (self.root, self.samples, self.classNames) = (root, samples, classNames)
    }
}

public enum DatasetError: Error, Equatable, CustomStringConvertible {
    case notADirectory(String)
    case unknownClassFolder(String)
    case classNotInTraining(String)
    case noImages(String)
    case unreadableImage(String)

    public var description: String {
        switch self {
        case let .notADirectory(path): return "\(path) is not a directory"
        case let .unknownClassFolder(name):
            return "class folder '\(name)' is neither an ImageNet WordNet id (like n01440764) nor a class index"
        case let .classNotInTraining(name): return "class folder '\(name)' is not one of the training set's classes"
        case let .noImages(path): return "no JPEG or PNG images in the class folders of \(path)"
        case let .unreadableImage(reason): return reason
        }
    }
}

/// What `evaluate` measured.
public struct Evaluation: Sendable {
    /// Images scored, and how many of them had their label first (`top1Correct`) or among the first five.
    public var images = 0, top1Correct = 0, top5Correct = 0
    /// Files that could not be decoded and were skipped, with the reason.
    public var skipped: [(path: String, reason: String)] = []
    public var seconds = 0.0
    public var top1Accuracy: Double { images == 0 ? 0 : Double(top1Correct) / Double(images) }
    public var top5Accuracy: Double { images == 0 ? 0 : Double(top5Correct) / Double(images) }
    public var imagesPerSecond: Double { seconds == 0 ? 0 : Double(images) / seconds }
}

extension InceptionModel {
    /// Top-1 and top-5 accuracy over a data set, in batches. The next batch is decoded and preprocessed on another
    /// thread while the network runs the current one. Undecodable files are skipped (`stopOnError: false`) or end
    /// the evaluation with their error.
    public func evaluate(_ data: ImageFolder, batch: Int = 8, threads: Int = Parallel.defaultThreads,
                         stopOnError: Bool = false, limit: Int? = nil,
                         progress: ((Int, Int) -> Void)? = nil) throws -> Evaluation {
        guard let logitsNode = graph.outputs[.logits] else {
            throw InputError.unknownOutput(.logits, model: name.rawValue, available: outputNames)
        }
        let samples = Array(data.samples.prefix(limit ?? data.samples.count))
        let shift = classes == 1001 && classNames == nil ? 1 : 0
        let (preprocessing, inputSize) = (name.preprocessing, inputSize)
        let perBatch = max(1, batch)
        let batches = stride(from: 0, to: samples.count, by: perBatch).map {
            Array(samples[$0..<min(samples.count, $0 + perBatch)])
        }

        final class Prepared: @unchecked Sendable {
            var pixels: [Float] = [], labels: [Int] = [], skipped: [(String, String)] = [], error: Error?
            let done = DispatchGroup()
        }
        func prepare(_ batch: [ImageFolder.Sample]) -> Prepared {
            let prepared = Prepared()
            prepared.done.enter()
            DispatchQueue.global().async {
                defer { prepared.done.leave() }
                for sample in batch {
                    do {
                        let image = try RGBImage(contentsOf: URL(fileURLWithPath: sample.path))
                        prepared.pixels += preprocessing.apply(image, inputSize: inputSize)
                        prepared.labels.append(sample.label + shift)
                    } catch {
                        if stopOnError { prepared.error = error; return }
                        prepared.skipped.append((sample.path, "\(error)"))
                    }
                }
            }
            return prepared
        }

        var result = Evaluation()
        let start = DispatchTime.now().uptimeNanoseconds
        var next = batches.isEmpty ? nil : prepare(batches[0])
        for index in batches.indices {
            guard let current = next else { break }
            current.done.wait()
            next = index + 1 < batches.count ? prepare(batches[index + 1]) : nil
            if let error = current.error { next?.done.wait(); throw error }
            result.skipped += current.skipped.map { (path: $0.0, reason: $0.1) }
            let n = current.labels.count
            if n > 0 {
                let size = inputSize
                let logits = try compiled.run(Tensor(shape: [n, size, size, 3], scalars: current.pixels),
                                              output: logitsNode,
                                              threads: threads)
                for (i, top) in predictions(logits: logits, top: 5).enumerated() {
                    if top.first?.index == current.labels[i] { result.top1Correct += 1 }
                    if top.contains(where: { $0.index == current.labels[i] }) { result.top5Correct += 1 }
                }
                result.images += n
            }
            progress?(result.images + result.skipped.count, samples.count)
        }
        result.seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return result
    }
}

extension InceptionModel {
    /// `root` labelled in this model's classes: by the checkpoint's class names when it has them (the layout
    /// `inception train` reads), by ImageNet WordNet id or index for an ImageNet classifier, else by its sorted
    /// class folders, as training labels them.
    public func imageFolder(_ root: String) throws -> ImageFolder {
        if let classNames { return try ImageFolder(root, classes: classNames) }
        if classes == 1000 || classes == 1001 { return try ImageFolder(root) }
        return try ImageFolder(root, classes: nil)
    }
}
