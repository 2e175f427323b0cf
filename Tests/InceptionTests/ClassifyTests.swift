import Foundation
import Inception
import InceptionIO
import InceptionReferences
import InceptionTestSupport
import Testing

@Suite(.serialized) struct ClassifyTests {
    static let photos = ["chelsea_baseline.jpg", "coffee_progressive.jpg", "rocket.jpg", "motorcycle_rgba.png",
                         "chelsea_palette.png"]

    func temporaryDirectory() throws -> URL { try scratchDirectory("cls") }

    func classifyJSON(_ arguments: [String]) throws -> [[String: Any]] {
        let result = try runInception(["classify", "--json"] + arguments)
        #expect(result.status == 0, "\(result.stderr)")
        return try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [[String: Any]]
    }

    /// classify = preprocess, then the network, then labels: its top-5 equals timm's top-5 on the tensor that
    /// `inception preprocess` wrote, with the same weights.
    @Test(arguments: [ModelName.inceptionV4, .inceptionResNetV2])
    func topFiveEqualsTimmOnThePreprocessedTensor(_ model: ModelName) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let images = try Self.photos.map { try Photos.imageURL($0).path }
        let x = dir.appendingPathComponent("x.npy").path
        #expect(try runInception(["preprocess", "--model", model.rawValue, "--output", x] + images).status == 0)
        let weights = try References.weights(model).path
        let timm = try run(venvPython(), [repositoryRoot.appendingPathComponent("scripts/timm_top5.py").path,
                                          model.rawValue, weights, x])
        #expect(timm.status == 0, "\(timm.stderr)")
        let expected = try JSONSerialization.jsonObject(with: Data(timm.stdout.utf8)) as! [[Int]]
        let ours = try classifyJSON(["--model", model.rawValue, "--weights", weights] + images)
        let indices = ours.map { ($0["predictions"] as! [[String: Any]]).map { $0["index"] as! Int } }
        #expect(indices == expected)
        let first = (ours[0]["predictions"] as! [[String: Any]])[0]
        #expect(first["label"] as? String == imageNetClasses[expected[0][0]].name)
        #expect(first["wordnet_id"] as? String == imageNetClasses[expected[0][0]].wordNetID)
    }

    /// A TF-slim-style 1001-way classifier (class 0 = background) is recognised by its shape and labelled with
    /// ImageNet's classes shifted right by one.
    @Test func thousandAndOneClassesShiftTheLabels() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = try SafeTensorsFile(contentsOf: try References.weights(.inceptionV4))
        var tensors = try file.entries.keys.sorted().filter { !$0.hasSuffix("num_batches_tracked") }.map {
            (name: $0, shape: file.entries[$0]!.shape, values: try file.floats($0))
        }
        let w = tensors.firstIndex { $0.name == "last_linear.weight" }!,
            b = tensors.firstIndex { $0.name == "last_linear.bias" }!
        tensors[w] = (tensors[w].name, [1001, 1536], [Float](repeating: 0, count: 1536) + tensors[w].values)
        tensors[b] = (tensors[b].name, [1001], [-1000] + tensors[b].values)
        let slim = dir.appendingPathComponent("slim.safetensors")
        try SafeTensorsFile.write(tensors, to: slim)
        let image = try Photos.imageURL("chelsea_baseline.jpg").path
        let shifted = (try classifyJSON(["--weights", slim.path, image])[0]["predictions"] as! [[String: Any]])
        let plain = (try classifyJSON(["--weights", try References.weights(.inceptionV4).path,
                                       image])[0]["predictions"] as! [[String: Any]])
        #expect(shifted.map { $0["index"] as! Int } == plain.map { ($0["index"] as! Int) + 1 })
        #expect(shifted.map { $0["label"] as! String } == plain.map { $0["label"] as! String })
        let model = try InceptionModel(.inceptionV4, weights: slim)
        #expect(model.label(0).name == "background" && model.label(1).wordNetID == "n01440764")
    }

    /// eval's counts equal what classify says about the same images; a broken file is reported and skipped, or
    /// stops the run when asked.
    @Test func evalAgreesWithClassifyAndSkipsBrokenFiles() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try References.weights(.inceptionV4).path
        let images = try Self.photos.map { try Photos.imageURL($0).path }
        let predictions = try classifyJSON(["--weights", weights] + images).map {
            ($0["predictions"] as! [[String: Any]]).map { $0["index"] as! Int }
        }
        // Class folders by WordNet id and by index: the first image under its own top-1 class (a hit), the others
        // under a class outside their top-5 (a miss) or inside it at rank 3 (a top-5 hit).
        var top1 = 0, top5 = 0
        for (i, image) in images.enumerated() {
            let label = i == 0 ? predictions[i][0]
                : i % 2 == 0 ? predictions[i][2] : (0..<1000).first { !predictions[i].contains($0) }!
            if label == predictions[i][0] { top1 += 1 }
            if predictions[i].contains(label) { top5 += 1 }
            let folder = dir.appendingPathComponent("data")
                .appendingPathComponent(i % 2 == 0 ? imageNetClasses[label].wordNetID : String(label))
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: image,
                                             toPath: folder.appendingPathComponent("\(i)-"
                                                 + (image as NSString).lastPathComponent).path)
        }
        let broken = dir.appendingPathComponent("data").appendingPathComponent(imageNetClasses[7].wordNetID)
        try FileManager.default.createDirectory(at: broken, withIntermediateDirectories: true)
        try Data([0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]).write(to: broken.appendingPathComponent("broken.jpg"))

        let result = try runInception(["eval", "--weights", weights, "--batch", "2", "--json",
                                       dir.appendingPathComponent("data").path])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: Any]
        #expect(json["images"] as? Int == images.count)
        #expect(json["skipped"] as? Int == 1)
        #expect(json["top1"] as? Double == Double(top1) / Double(images.count))
        #expect(json["top5"] as? Double == Double(top5) / Double(images.count))
        #expect((json["images_per_second"] as? Double ?? 0) > 0)
        #expect(result.stderr.contains("skipped \(broken.path)/broken.jpg: corrupt JPEG"))

        let stopped = try runInception(["eval", "--weights", weights, "--stop-on-error",
                                        dir.appendingPathComponent("data").path])
        #expect(stopped.status == 1)
        #expect(stopped.stderr.hasPrefix("error: \(broken.path)/broken.jpg: corrupt JPEG"))
    }

    /// embed = preprocess, then the network's embedding (face model) or pooled features (the others).
    @Test(arguments: [(ModelName.inceptionResNetV1FaceNet, "embedding", 512), (.inceptionV4, "features", 1536)])
    func embedEqualsPredictOnThePreprocessedTensor(_ model: ModelName, _ output: String, _ dimension: Int) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let images = try Self.photos.prefix(3).map { try Photos.imageURL($0).path }
        let (e, x, y) = ["e.npy", "x.npy", "y.npy"].map { dir.appendingPathComponent($0).path }.splat
        let weights = try References.weights(model).path
        #expect(try runInception(["embed", "--model", model.rawValue, "--weights", weights, "--output", e, "--batch",
                                  "2", "--no-detect"] + images).status == 0)
        #expect(try runInception(["preprocess", "--model", model.rawValue, "--output", x] + images).status == 0)
        #expect(try runInception(["predict", "--model", model.rawValue, "--weights", weights, "--input", x,
                                  "--output", y,
                                  "--result", output]).status == 0)
        let embedded = try NPY.read(contentsOf: URL(fileURLWithPath: e)),
            predicted = try NPY.read(contentsOf: URL(fileURLWithPath: y))
        #expect(embedded.shape == [3, dimension] && predicted.shape == [3, dimension])
        let errors = perSampleRelativeError(Tensor(shape: embedded.shape, scalars: embedded.values),
                                            Tensor(shape: predicted.shape, scalars: predicted.values))
        #expect(errors.allSatisfy { $0 < 1e-6 }, "\(errors)")
        if output == "embedding" {
            for row in 0..<3 {
                let norm = embedded.values[(row * dimension)..<((row + 1) * dimension)].reduce(0) { $0 + $1
                    * $1 }.squareRoot()
                #expect(abs(norm - 1) < 1e-5)
            }
        }
    }

    @Test func evalRejectsAClassFolderItCannotName() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("cats"),
                                                withIntermediateDirectories: true)
        let result = try runInception(["eval", "--weights", try References.weights(.inceptionV4).path, dir.path])
        #expect(result.status == 1)
        #expect(result.stderr
                == "error: class folder 'cats' is neither an ImageNet WordNet id (like n01440764) nor a class index\n")
    }

    @Test func evalRejectsAFolderWithoutImages() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("n01440764"),
                                                withIntermediateDirectories: true)
        let result = try runInception(["eval", "--weights", try References.weights(.inceptionV4).path, dir.path])
        #expect(result.status == 1)
        #expect(result.stderr == "error: no JPEG or PNG images in the class folders of \(dir.path)\n")
    }
}

extension Array {
    /// The first three elements, for destructuring.
    var splat: (Element, Element, Element) { (self[0], self[1], self[2]) }
}
