import Foundation
import Inception
import InceptionEngine
import InceptionIO
import InceptionReferences
import InceptionTestSupport
import Testing

/// MTCNN against facenet-pytorch 2.6 (scripts/make_face_references.py) with its released weights on real photos:
/// a group of eight, one face filling a small photo, the astronaut, a photo without a face, the group at 4000 px, at
/// 400 px and cut so that faces touch the borders, and a grid of twenty faces. Boxes and landmarks within 1e-3
/// pixels, probabilities within 1e-5, the aligned crops (standardised as the face model takes them) within 1e-4.
@Suite(.serialized) struct FaceDetectionConformance {
    static let photos = ["t1", "hanks", "astronaut", "coffee", "t1_large", "t1_small", "t1_border", "grid20"]

    struct Recorded: Decodable {
        let photo: String
        let boxes: [[Float]]
        let probabilities: [Float]
        let landmarks: [[[Float]]]
    }

    static func detector() throws -> FaceDetector {
        guard let weights = FaceDetector.weightsDirectory(environment: [
            "INCEPTION_VENV": venvPython().deletingLastPathComponent().deletingLastPathComponent().path,
        ]) else {
            throw References.Missing(path: "facenet_pytorch/data in the reference venv")
        }
        return try FaceDetector(weights: weights)
    }

    static func folder() -> URL { References.directory.appendingPathComponent("faces") }

    /// facenet-pytorch's record of a photo, the photo, and what the detector finds in it.
    static func detected(_ stem: String) throws -> (Recorded, RGBImage, [Face]) {
        let recorded = try JSONDecoder().decode(
            Recorded.self, from: Data(contentsOf: folder().appendingPathComponent("\(stem)_detect.json")))
        let image = try RGBImage(contentsOf: folder().appendingPathComponent(recorded.photo))
        return (recorded, image, try detector().detect(image))
    }

    @Test(arguments: photos)
    func detectionEqualsFacenetPytorch(_ stem: String) throws {
        let (recorded, _, faces) = try Self.detected(stem)
        try #require(faces.count == recorded.boxes.count,
                     "\(stem): \(faces.count) faces, facenet-pytorch found \(recorded.boxes.count)")
        var worst = (box: Float(0), probability: Float(0), landmark: Float(0))
        for (face, k) in zip(faces, faces.indices) {
            let box = [face.box.x1, face.box.y1, face.box.x2, face.box.y2]
            worst.box = max(worst.box, zip(box, recorded.boxes[k]).map { abs($0 - $1) }.max()!)
            worst.probability = max(worst.probability, abs(face.probability - recorded.probabilities[k]))
            for (point, expected) in zip(face.landmarks, recorded.landmarks[k]) {
                worst.landmark = max(worst.landmark, abs(point.x - expected[0]), abs(point.y - expected[1]))
            }
        }
        #expect(worst.box <= 1e-3 && worst.landmark <= 1e-3 && worst.probability <= 1e-5,
                "\(stem): worst |Δ| box \(worst.box), landmark \(worst.landmark), probability \(worst.probability)")
    }

    @Test(arguments: photos)
    func alignedCropsEqualFacenetPytorch(_ stem: String) throws {
        let (_, image, faces) = try Self.detected(stem)
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.folder().path)
            .filter { $0.hasPrefix("\(stem)_crops_") }
        try #require(!files.isEmpty, "no recorded crops for \(stem)")
        for file in files {
            let margin = Int(file.dropFirst("\(stem)_crops_".count).dropLast(4))!
            let (shape, expected) = try NPY.read(contentsOf: Self.folder().appendingPathComponent(file))
            try #require(shape.first == faces.count, "\(file): \(faces.count) faces, recorded \(shape)")
            let crops = faces.map { $0.alignedCrop(of: image, margin: margin)! }
            let values = crops.flatMap { Preprocessing.faceNet.normalized($0) }
            let worst = zip(values, expected).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 1e-4, "\(file): worst |Δ| \(worst)")
        }
    }
}
