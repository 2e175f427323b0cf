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

    /// The samples at `positions` of this set, labelled alike (a rank's share of a batch job).
    package func subset(_ positions: Range<Int>) -> ImageFolder {
        ImageFolder(root: root, samples: Array(samples[positions]), classNames: classNames)
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
    /// Each image scored, in the data set's order.
    public var scores: [ImageScore] = []
    /// Images scored, and how many of them had their label first (`top1Correct`) or among the first five.
    public var images: Int { scores.count }
    public var top1Correct: Int { scores.filter(\.top1Correct).count }
    public var top5Correct: Int { scores.filter(\.top5Correct).count }
    /// Files that could not be decoded and were skipped, with the reason.
    public var skipped: [(path: String, reason: String)] = []
    public var seconds = 0.0
    public var top1Accuracy: Double { images == 0 ? 0 : Double(top1Correct) / Double(images) }
    public var top5Accuracy: Double { images == 0 ? 0 : Double(top5Correct) / Double(images) }
    /// The paper's figures: 1 − accuracy.
    public var top1Error: Double { 1 - top1Accuracy }
    public var top5Error: Double { 1 - top5Accuracy }
    public var imagesPerSecond: Double { seconds == 0 ? 0 : Double(images) / seconds }

    package init() {}
}

/// One image of an evaluation: its label (in the model's classes) and its five most probable classes.
public struct ImageScore: Sendable {
    public let path: String
    public let label: Int
    public let top5: [Prediction]
    public var top1Correct: Bool { top5.first?.index == label }
    public var top5Correct: Bool { top5.contains { $0.index == label } }

    package init(path: String, label: Int, top5: [Prediction]) {
        (self.path, self.label, self.top5) = (path, label, top5)
    }
}

extension InceptionModel {
    /// Top-1 and top-5 accuracy over a data set: each image through `crops`' views (the centre crop by default),
    /// their probabilities combined by `average`; the views run in passes of at most `batch`. Undecodable files are
    /// skipped (`stopOnError: false`) or end the evaluation with their error.
    public func evaluate(_ data: ImageFolder, batch: Int = 8, crops: CropProtocol = .single,
                         average: CropAverage = .probabilities, threads: Int = Parallel.defaultThreads,
                         stopOnError: Bool = false, limit: Int? = nil,
                         progress: ((Int, Int) -> Void)? = nil) throws -> Evaluation {
        try Ensemble([self]).evaluate(data, batch: batch, crops: crops, average: average, threads: threads,
                                      stopOnError: stopOnError, limit: limit, progress: progress)
    }
}

extension Ensemble {
    /// `InceptionModel.evaluate` for the ensemble: each image's probabilities averaged over the members, each member
    /// with its own preprocessing. The next images are decoded and prepared on another thread while the networks run
    /// the current ones.
    public func evaluate(_ data: ImageFolder, batch: Int = 8, crops: CropProtocol = .single,
                         average: CropAverage = .probabilities, threads: Int = Parallel.defaultThreads,
                         stopOnError: Bool = false, limit: Int? = nil,
                         progress: ((Int, Int) -> Void)? = nil) throws -> Evaluation {
        let samples = Array(data.samples.prefix(limit ?? data.samples.count))
        let first = members[0]
        let shift = first.classes == 1001 && first.classNames == nil ? 1 : 0
        // Images per step: a pass of `batch` views, or one image's views when it has more.
        let perStep = max(1, batch / crops.rawValue)
        let steps = stride(from: 0, to: samples.count, by: perStep).map {
            Array(samples[$0..<min(samples.count, $0 + perStep)])
        }
        var result = Evaluation()
        let start = DispatchTime.now().uptimeNanoseconds
        var next = steps.isEmpty ? nil : prepare(steps[0], crops: crops, stopOnError: stopOnError)
        for index in steps.indices {
            guard let current = next else { break }
            current.done.wait()
            next = index + 1 < steps.count ? prepare(steps[index + 1], crops: crops, stopOnError: stopOnError) : nil
            if let error = current.error { next?.done.wait(); throw error }
            result.skipped += current.skipped.map { (path: $0.0, reason: $0.1) }
            let probabilities = try self.probabilities(views: current.views, average: average, batch: batch,
                                                       threads: threads)
            for (i, top5) in predictions(probabilities, top: 5).enumerated() {
                result.scores.append(ImageScore(path: current.samples[i].path, label: current.samples[i].label + shift,
                                                top5: top5))
            }
            progress?(result.images + result.skipped.count, samples.count)
        }
        result.seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return result
    }

    /// Decoded and prepared off the calling thread: the samples read, their views, the files skipped.
    private final class Prepared: @unchecked Sendable {
        var samples: [ImageFolder.Sample] = [], views: [[[[Float]]]] = [], skipped: [(String, String)] = []
        var error: Error?
        let done = DispatchGroup()
    }

    private func prepare(_ step: [ImageFolder.Sample], crops: CropProtocol, stopOnError: Bool) -> Prepared {
        let prepared = Prepared()
        prepared.done.enter()
        DispatchQueue.global().async {
            defer { prepared.done.leave() }
            for sample in step {
                do {
                    let image = try RGBImage(contentsOf: URL(fileURLWithPath: sample.path))
                    prepared.views += views([image], crops: crops)
                    prepared.samples.append(sample)
                } catch {
                    if stopOnError { prepared.error = error; return }
                    prepared.skipped.append((sample.path, "\(error)"))
                }
            }
        }
        return prepared
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
