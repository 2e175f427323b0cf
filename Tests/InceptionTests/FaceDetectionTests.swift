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
        try FaceDetector(weights: try References.detectorWeights())
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

/// The gallery's exact search against the same distances computed here in Double, on random unit embeddings of many
/// people.
@Suite struct FaceGalleryTests {
    @Test func searchRanksPeopleByTheirClosestFace() throws {
        let scratch = try scratchDirectory("face-gallery")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let gallery = try FaceGallery(path: scratch.appendingPathComponent("g.sqlite").path, model: "m", dimension: 64,
                                      create: true)
        var rng = SplitMix64(3)
        func vector() -> [Float] { (0..<64).map { _ in Float(rng.next() % 2001) / 1000 - 1 } }
        var stored: [(person: String, embedding: [Double])] = []
        for photo in 0..<60 {
            let faces = (0..<3).map { _ in (face: Face(box: FaceBox(x1: 0, y1: 0, x2: 9, y2: 9), probability: 1,
                                                       landmarks: []), embedding: vector()) }
            let person = "p\(photo % 17)"
            try gallery.store(path: "photo\(photo)", person: person, size: 1, modified: 0, faces: faces)
            stored += faces.map { (person, FaceDistance.unit($0.embedding)) }
        }
        let probes = (0..<4).map { _ in vector() }
        let found = try gallery.search(probes, top: 5)
        for (probe, matches) in zip(probes, found) {
            let unit = FaceDistance.unit(probe)
            var best: [String: Double] = [:]
            for (person, embedding) in stored {
                best[person] = min(best[person] ?? .infinity, FaceDistance.distance(unit, embedding))
            }
            let expected = best.sorted { ($0.value, $0.key) < ($1.value, $1.key) }.prefix(5)
            #expect(matches.map(\.person) == expected.map(\.key))
            #expect(zip(matches, expected).allSatisfy { abs($0.distance - $1.value) < 1e-5 })
        }
        #expect(try gallery.counts() == (faces: 180, people: 17))
        #expect(throws: FaceGalleryError.self) {
            try FaceGallery(path: scratch.appendingPathComponent("g.sqlite").path, model: "other", dimension: 64,
                            create: false)
        }
    }
}
