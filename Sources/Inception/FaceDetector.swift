import Foundation
import InceptionEngine
import InceptionIO
import InceptionModels

/// A face in a photo, as MTCNN finds it.
public struct Face: Sendable, Equatable, Codable {
    /// The face's box in the photo's pixels (facenet-pytorch's: it may reach past the photo's edges).
    public var box: FaceBox
    /// O-Net's probability that the box holds a face.
    public var probability: Float
    /// Left eye, right eye, nose, left and right corners of the mouth, as facenet-pytorch orders them.
    public var landmarks: [FacePoint]

    public init(box: FaceBox, probability: Float, landmarks: [FacePoint]) {
        (self.box, self.probability, self.landmarks) = (box, probability, landmarks)
    }
}

extension Face {
    /// The face as JSON (`JSONSerialization`): box [x1, y1, x2, y2], probability, landmarks [[x, y]…] — what the
    /// commands print and the server answers.
    public var record: [String: Any] {
        ["box": [box.x1, box.y1, box.x2, box.y2].map(Double.init), "probability": Double(probability),
         "landmarks": landmarks.map { [Double($0.x), Double($0.y)] }]
    }
}

/// A box by its corners, (x1, y1) top left and (x2, y2) bottom right.
public struct FaceBox: Sendable, Equatable, Codable {
    public var x1: Float, y1: Float, x2: Float, y2: Float
    public init(x1: Float, y1: Float, x2: Float, y2: Float) { (self.x1, self.y1, self.x2, self.y2) = (x1, y1, x2, y2) }
}

public struct FacePoint: Sendable, Equatable, Codable {
    public var x: Float, y: Float
    public init(x: Float, y: Float) { (self.x, self.y) = (x, y) }
}

/// MTCNN face detection and alignment, exact to facenet-pytorch 2.6's `MTCNN`: the image pyramid, P-Net, R-Net and
/// O-Net with their thresholds, non-maximum suppression, box regression and the five landmarks. Load it once; it
/// can detect from many threads at once.
///
/// ```swift
/// let detector = try FaceDetector(weights: FaceDetector.weightsDirectory()!)
/// for face in try detector.detect(photo) { print(face.box, face.probability) }
/// ```
public final class FaceDetector: Sendable {
    /// facenet-pytorch's `MTCNN` arguments, with its defaults.
    public struct Settings: Sendable, Equatable {
        /// The smallest face searched for, in pixels (`min_face_size`): the pyramid starts at 12 / this.
        public var minimumFaceSize: Int
        /// P-Net's, R-Net's and O-Net's probability thresholds (`thresholds`).
        public var thresholds: [Float]
        /// The pyramid's scale step (`factor`).
        public var scaleFactor: Double

        /// Refuses what would not terminate or could not be meant: thresholds outside [0, 1], a factor outside
        /// (0, 0.95], a minimum face size under 4 pixels (the pyramid would start 3 times larger than the photo).
        public init(minimumFaceSize: Int = 20, thresholds: [Float] = [0.6, 0.7, 0.7],
                    scaleFactor: Double = 0.709) throws {
            guard minimumFaceSize >= 4 else { throw FaceDetectorError.setting("the minimum face size is 4 pixels") }
            guard thresholds.count == 3, thresholds.allSatisfy({ $0 >= 0 && $0 <= 1 }) else {
                throw FaceDetectorError.setting("thresholds are three probabilities between 0 and 1")
            }
            guard scaleFactor > 0 && scaleFactor <= 0.95 else {
                throw FaceDetectorError.setting("the scale factor is above 0 and at most 0.95")
            }
            (self.minimumFaceSize, self.thresholds, self.scaleFactor) = (minimumFaceSize, thresholds, scaleFactor)
        }

        public static let `default` = try! Settings()
    }

    let proposal: CompiledGraph, refinement: CompiledGraph, output: CompiledGraph
    public let settings: Settings

    /// Loads `pnet.pt`, `rnet.pt` and `onet.pt` from `weights` (facenet-pytorch's `data` folder).
    public init(weights: URL, settings: Settings = .default) throws {
        // P-Net runs at a new size for every scale of every photo: its arenas (tens of MB each) are not kept.
        proposal = try Self.compile(MTCNN.proposal(), weights.appendingPathComponent("pnet.pt"), usualInputSize: 400,
                                    keptPlans: 2)
        refinement = try Self.compile(MTCNN.refinement(), weights.appendingPathComponent("rnet.pt"), usualInputSize: 24)
        output = try Self.compile(MTCNN.output(), weights.appendingPathComponent("onet.pt"), usualInputSize: 48)
        self.settings = settings
    }

    /// The faces in `image`, largest first (`MTCNN.detect(img, landmarks=True)` with `select_largest=True`).
    public func detect(_ image: RGBImage, threads: Int = Parallel.defaultThreads) throws -> [Face] {
        guard image.width > 0 && image.height > 0 else { return [] }
        let cascade = FaceCascade(detector: self, image: image, threads: max(1, threads))
        var boxes = try cascade.proposals()
        if !boxes.isEmpty { boxes = try cascade.refined(boxes) }
        if !boxes.isEmpty { boxes = try cascade.finished(boxes) }
        // NumPy's argsort of the areas, reversed: ties end up later-first.
        let order = boxes.indices.sorted { (boxes[$0].area, $0) < (boxes[$1].area, $1) }.reversed()
        return order.map { i in
            let b = boxes[i]
            return Face(box: FaceBox(x1: b.x1, y1: b.y1, x2: b.x2, y2: b.y2), probability: b.score,
                        landmarks: (0..<5).map { FacePoint(x: b.landmarks[$0], y: b.landmarks[5 + $0]) })
        }
    }

    static func compile(_ graph: Graph, _ file: URL, usualInputSize: Int, keptPlans: Int = 32) throws
        -> CompiledGraph
    {
        guard FileManager.default.fileExists(atPath: file.path) else {
            throw FaceDetectorError.missingWeights(path: file.path)
        }
        let checkpoint = try PyTorchCheckpoint(contentsOf: file)
        var specs: [String: ParameterSpec] = [:]
        for spec in graph.parameters {
            let stored = MTCNN.denseOverMap.contains(spec.name) ? [spec.shape[0], spec.count / spec.shape[0]]
                : spec.shape
            guard let shape = checkpoint.shapes[spec.name] else {
                throw FaceDetectorError.missingTensor(path: file.path, name: spec.name)
            }
            guard shape == stored else {
                throw FaceDetectorError.wrongShape(path: file.path, name: spec.name, expected: stored, got: shape)
            }
            specs[spec.name] = spec
        }
        return try CompiledGraph(graph: graph, usualInputSize: usualInputSize, keptPlans: keptPlans) { name in
            let values = try checkpoint.floats(name)
            guard MTCNN.denseOverMap.contains(name), let s = specs[name]?.shape else { return values }
            return MTCNN.convolutionWeights(dense: values, outFeatures: s[0], channels: s[1], side: s[2])
        }
    }
}

public enum FaceDetectorError: Error, Equatable, CustomStringConvertible {
    case missingWeights(path: String)
    case missingTensor(path: String, name: String)
    case wrongShape(path: String, name: String, expected: [Int], got: [Int])
    case setting(String)

    public var description: String {
        switch self {
        case let .missingWeights(path):
            return "MTCNN's weights are not at \(path): pass --detector-weights with facenet-pytorch's data folder "
                + "(pnet.pt, rnet.pt, onet.pt; `pip install facenet-pytorch` puts them in site-packages/"
                + "facenet_pytorch/data)"
        case let .missingTensor(path, name):
            return "\(path) has no tensor '\(name)': not facenet-pytorch's MTCNN weights"
        case let .wrongShape(path, name, expected, got):
            return "\(path): tensor '\(name)' is \(got), MTCNN's is \(expected)"
        case let .setting(reason):
            return reason
        }
    }
}

extension Face {
    /// The aligned crop facenet-pytorch's `MTCNN(image_size: size, margin: margin)` embeds (`extract_face`): the box
    /// widened by `margin` pixels of the output image, clipped to the photo, truncated to whole pixels and resized to
    /// `size × size` with Pillow's bilinear filter. Nil where the box holds no pixel of the photo.
    public func alignedCrop(of image: RGBImage, size: Int = 160, margin: Int = 0) -> RGBImage? {
        precondition(size > 0 && margin >= 0 && margin < size, "a margin is smaller than the crop")
        // NumPy 2's float32 arithmetic on the box, and Python's int() (toward zero) on the result.
        let mx = Float(margin) * (box.x2 - box.x1) / Float(size - margin)
        let my = Float(margin) * (box.y2 - box.y1) / Float(size - margin)
        func whole(_ v: Float) -> Int { v.isFinite ? Int(max(min(v, 1e9), -1e9)) : 0 }
        let left = whole(max(box.x1 - mx / 2, 0)), top = whole(max(box.y1 - my / 2, 0))
        let right = whole(min(box.x2 + mx / 2, Float(image.width)))
        let bottom = whole(min(box.y2 + my / 2, Float(image.height)))
        guard right > left, bottom > top, left < image.width, top < image.height else { return nil }
        return image.cropped(left: left, top: top, width: right - left, height: bottom - top)
            .resized(width: size, height: size, filter: .bilinear)
    }
}
