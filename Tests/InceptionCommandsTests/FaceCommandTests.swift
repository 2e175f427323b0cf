import Foundation
import Inception
import InceptionIO
import InceptionReferences
import InceptionTestSupport
import Testing

/// `inception faces` and `--detect` as a user runs them on real photos (scripts/make_face_references.py): twenty
/// faces, none, a corrupt photo and a 12000 × 12000 one; crops and embeddings equal to the library's and to
/// facenet-pytorch's; refusals in one line.
@Suite(.serialized) struct FaceCommandTests {
    static func photo(_ name: String) -> String {
        References.directory.appendingPathComponent("faces").appendingPathComponent(name).path
    }

    static var detectorWeights: [String] {
        get throws { ["--detector-weights", try References.detectorWeights().path] }
    }

    struct Recorded: Decodable { let boxes: [[Float]] }

    @Test func detectReportsEveryPhoto() throws {
        let scratch = try scratchDirectory("faces-detect")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let corrupt = scratch.appendingPathComponent("corrupt.jpg")
        let t1 = try Data(contentsOf: URL(fileURLWithPath: Self.photo("t1.jpg")))
        try t1.prefix(t1.count / 3).write(to: corrupt)
        let result = try runInception(["faces", "detect", "--json"] + (try Self.detectorWeights)
                                      + [Self.photo("grid20.png"), Self.photo("coffee.jpg"), corrupt.path])
        #expect(result.status == 1)
        let errors = result.stderr.split(separator: "\n")
        #expect(errors.count == 2 && errors.contains { $0.contains("coffee.jpg: no face found") }
                && errors.contains { $0.contains("corrupt.jpg") }, "\(result.stderr)")
        let printed = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let photos = try #require(printed?["photos"] as? [[String: Any]])
        let faces = try #require(photos.first?["faces"] as? [[String: Any]])
        let recorded = try JSONDecoder().decode(Recorded.self, from: Data(contentsOf: URL(
            fileURLWithPath: Self.photo("grid20_detect.json"))))
        #expect(faces.count == 20 && recorded.boxes.count == 20)
        for (face, expected) in zip(faces, recorded.boxes) {
            let box = (face["box"] as? [Double] ?? []).map(Float.init)
            #expect(zip(box, expected).allSatisfy { abs($0 - $1) <= 1e-3 }, "\(box) against \(expected)")
        }
        #expect((photos[1]["faces"] as? [Any])?.isEmpty == true)
    }

    @Test func cropsAreFacenetPytorchsPixels() throws {
        let scratch = try scratchDirectory("faces-crop")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let result = try runInception(["faces", "crop", "--margin", "20", "--output", scratch.path]
                                      + (try Self.detectorWeights) + [Self.photo("t1.jpg")])
        #expect(result.status == 0, "\(result.stderr)")
        let (shape, expected) = try NPY.read(contentsOf: URL(fileURLWithPath: Self.photo("t1_crops_20.npy")))
        let per = 160 * 160 * 3
        for k in 0..<shape[0] {
            let crop = try RGBImage(contentsOf: scratch.appendingPathComponent("t1.\(k + 1).png"))
            let pixels = expected[(k * per)..<((k + 1) * per)].map { UInt8(($0 * 128 + 127.5).rounded()) }
            #expect(crop.pixels == pixels, "crop \(k + 1)")
        }
    }

    @Test func embedNamesTheFaceOfEachRow() throws {
        let scratch = try scratchDirectory("faces-embed")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let weights = try References.weights(.inceptionResNetV1FaceNet)
        let output = scratch.appendingPathComponent("e.npy").path
        let photos = [Self.photo("t1.jpg"), Self.photo("coffee.jpg"), Self.photo("hanks.png")]
        let result = try runInception(["embed", "--model", "inception_resnet_v1_facenet", "--weights", weights.path,
                                       "--all-faces", "--json", "--output", output] + (try Self.detectorWeights)
                                      + photos)
        #expect(result.status == 1 && result.stderr.contains("coffee.jpg: no face found"), "\(result.stderr)")
        let (shape, rows) = try NPY.read(contentsOf: URL(fileURLWithPath: output))
        #expect(shape == [9, 512])
        let model = try InceptionModel(.inceptionResNetV1FaceNet, weights: weights)
        let detector = try FaceDetector(weights: URL(fileURLWithPath: try Self.detectorWeights[1]))
        var expected: [Float] = []
        for path in [photos[0], photos[2]] {
            let image = try RGBImage(contentsOf: URL(fileURLWithPath: path))
            expected += try model.embed(faces: try detector.detect(image), in: image).scalars
        }
        #expect(zip(rows, expected).allSatisfy { abs($0 - $1) <= 1e-5 })
        let printed = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let records = try #require(printed?["rows"] as? [[String: Any]])
        #expect(records.map { $0["photo"] as? String } == Array(repeating: photos[0], count: 8) + [photos[2]])
    }

    @Test func compareUsesEachPhotosLargestFace() throws {
        let weights = try References.weights(.inceptionResNetV1FaceNet)
        let photos = [Self.photo("hanks.png"), Self.photo("t1.jpg")]
        let result = try runInception(["compare", "--weights", weights.path, "--json"] + (try Self.detectorWeights)
                                      + photos)
        #expect(result.status == 0, "\(result.stderr)")
        let printed = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] ?? [:]
        let model = try InceptionModel(.inceptionResNetV1FaceNet, weights: weights)
        let detector = try FaceDetector(weights: URL(fileURLWithPath: try Self.detectorWeights[1]))
        let embeddings = try photos.map { path in
            let image = try RGBImage(contentsOf: URL(fileURLWithPath: path))
            return try model.embed(faces: [try #require(try detector.detect(image).first)], in: image).scalars
        }
        let distance = FaceDistance.distance(FaceDistance.unit(embeddings[0]), FaceDistance.unit(embeddings[1]))
        #expect(abs((printed["distance"] as? Double ?? -1) - distance) < 1e-6)
        #expect((printed["faces"] as? [Any])?.count == 2)
    }

    /// A gallery of two people and a photo without a face; enrolled again, unchanged photos are skipped and a changed
    /// one replaced; `find` names each probe's person at `compare`'s distance.
    @Test func enrollThenFind() throws {
        let scratch = try scratchDirectory("faces-gallery")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let gallery = scratch.appendingPathComponent("gallery")
        for (person, photo) in [("hanks", "hanks.png"), ("astronaut", "astronaut.jpg")] {
            let folder = gallery.appendingPathComponent(person)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: Self.photo(photo),
                                             toPath: folder.appendingPathComponent(photo).path)
        }
        try FileManager.default.copyItem(atPath: Self.photo("coffee.jpg"),
                                         toPath: gallery.appendingPathComponent("coffee_1.jpg").path)
        let weights = try References.weights(.inceptionResNetV1FaceNet).path
        let db = scratch.appendingPathComponent("people.sqlite").path
        let enroll = ["faces", "enroll", "--weights", weights, "--db", db, "--json"] + (try Self.detectorWeights)
            + [gallery.path]
        func counts(_ result: (status: Int32, stdout: String, stderr: String)) throws -> [Int] {
            let printed = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] ?? [:]
            return [(printed["enrolled"] as? [Any])?.count ?? -1, printed["unchanged"] as? Int ?? -1,
                    printed["faces"] as? Int ?? -1, printed["people"] as? Int ?? -1]
        }
        let first = try runInception(enroll)
        #expect(first.status == 1 && first.stderr.contains("coffee_1.jpg: no face found"), "\(first.stderr)")
        #expect(try counts(first) == [2, 0, 2, 2])
        let hanks = gallery.appendingPathComponent("hanks/hanks.png").path
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: 60)], ofItemAtPath: hanks)
        #expect(try counts(try runInception(enroll)) == [1, 1, 2, 2])
        let find = try runInception(["faces", "find", "--weights", weights, "--db", db, "--json", "--top", "2"]
                                    + (try Self.detectorWeights) + [Self.photo("hanks.png")])
        #expect(find.status == 0, "\(find.stderr)")
        let printed = try JSONSerialization.jsonObject(with: Data(find.stdout.utf8)) as? [String: Any] ?? [:]
        let faces = (printed["photos"] as? [[String: Any]])?.first?["faces"] as? [[String: Any]] ?? []
        let matches = try #require(faces.first?["matches"] as? [[String: Any]])
        #expect(matches.map { $0["person"] as? String } == ["hanks", "astronaut"])
        #expect((matches[0]["distance"] as? Double ?? 1) < 1e-5)
        let compare = try runInception(["compare", "--weights", weights, "--json"] + (try Self.detectorWeights)
                                       + [Self.photo("hanks.png"), Self.photo("astronaut.jpg")])
        let compared = try JSONSerialization.jsonObject(with: Data(compare.stdout.utf8)) as? [String: Any] ?? [:]
        #expect(abs((compared["distance"] as? Double ?? -1) - (matches[1]["distance"] as? Double ?? 1)) < 1e-5)
    }

    /// A 12000 × 12000 photo (the group pasted into it at 8000 pixels wide): the faces are found, in bands of
    /// bounded memory — the process stays under 1.5 GB (the decoded photo alone is 432 MB).
    @Test func aHugePhotoIsSearchedInBoundedMemory() throws {
        let scratch = try scratchDirectory("faces-huge")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let huge = scratch.appendingPathComponent("huge.jpg").path
        let script = """
            import resource, subprocess, sys
            from PIL import Image
            t1 = Image.open(sys.argv[1]).convert('RGB')
            big = Image.new('RGB', (12000, 12000), (200, 190, 180))
            big.paste(t1.resize((8000, 5538), Image.BICUBIC), (2000, 3000))
            big.save(sys.argv[2], quality=85)
            r = subprocess.run(sys.argv[3:], capture_output=True, text=True)
            print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
            print(r.stdout)
            """
        let result = try run(venvPython(), ["-c", script, Self.photo("t1.jpg"), huge, inceptionExecutable().path,
                                            "faces", "detect", "--json"] + (try Self.detectorWeights) + [huge])
        let lines = result.stdout.split(separator: "\n", maxSplits: 1)
        let fields = lines.first?.split(separator: " ").compactMap { Int($0) } ?? []
        #expect(fields.count == 2 && fields[0] == 0, "\(result.stdout.prefix(300)) \(result.stderr)")
        #expect(fields.count == 2 && fields[1] < 1_500_000, "peak RSS \(fields.last ?? 0) kB")
        let printed = try JSONSerialization.jsonObject(with: Data((lines.last ?? "").utf8)) as? [String: Any]
        let faces = ((printed?["photos"] as? [[String: Any]])?.first?["faces"] as? [Any]) ?? []
        #expect(faces.count >= 6, "\(faces.count) faces")
    }

    @Test(arguments: [
        (["faces", "detect", "--thresholds", "0.6,0.7", "x.jpg"], "--thresholds takes three probabilities"),
        (["faces", "detect", "--min-face-size", "2", "x.jpg"], "the minimum face size is 4 pixels"),
        (["faces", "crop", "--margin", "200", "--output", "/tmp/x", "x.jpg"], "--margin must be"),
        (["faces", "detect", "--detector-weights", "/no/such/folder", "x.jpg"], "MTCNN's weights are not at"),
    ])
    func refusalsAreOneLine(_ arguments: [String], _ message: String) throws {
        let result = try runInception(arguments)
        #expect(result.status != 0 && result.stdout.isEmpty)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1 && result.stderr.contains(message), "\(result.stderr)")
    }
}
