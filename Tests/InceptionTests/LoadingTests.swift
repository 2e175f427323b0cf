import Foundation
import Inception
import InceptionIO
import InceptionReferences
import InceptionTestSupport
import Testing

/// Loading is strict both ways. Each case writes a modified copy of the reference checkpoint.
@Suite(.serialized) struct StrictLoadingTests {
    static func tensors(_ model: ModelName) throws -> [(name: String, shape: [Int], values: [Float])] {
        let file = try SafeTensorsFile(contentsOf: try References.weights(model))
        return try file.entries.keys.sorted().filter { !$0.hasSuffix("num_batches_tracked") }.map {
            ($0, file.entries[$0]!.shape, try file.floats($0))
        }
    }

    func load(_ tensors: [(name: String, shape: [Int], values: [Float])], as model: ModelName = .inceptionV4) throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("w-\(UUID()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensorsFile.write(tensors, to: url)
        _ = try InceptionModel(model, weights: url)
    }

    @Test func acceptsTheCheckpointWithoutBatchCounters() throws {
        try load(try Self.tensors(.inceptionV4))
    }

    @Test func namesAMissingTensor() throws {
        let t = try Self.tensors(.inceptionV4).filter { $0.name != "features.6.branch1.1.bn.running_var" }
        #expect(throws: WeightsError.missingTensors(["features.6.branch1.1.bn.running_var [96]"],
                                                    model: "inception_v4")) {
            try load(t)
        }
    }

    @Test func namesAnUnusedTensor() throws {
        let t = try Self.tensors(.inceptionV4) + [("aux_logits.weight", [2], [1, 2])]
        #expect(throws: WeightsError.unexpectedTensors(["aux_logits.weight"], model: "inception_v4")) { try load(t) }
    }

    @Test func namesAWrongShapeWithBothShapes() throws {
        var t = try Self.tensors(.inceptionV4)
        let i = t.firstIndex { $0.name == "features.11.branch1.1.conv.weight" }!
        t[i] = (t[i].name, [224, 192, 7, 1], t[i].values)  // a 1×7 kernel stored as 7×1
        #expect(throws: WeightsError.shapeMismatch(key: "features.11.branch1.1.conv.weight", expected: [224, 192, 1, 7],
                                                   found: [224, 192, 7, 1], model: "inception_v4")) { try load(t) }
    }

    @Test func recognisesAnotherModelsWeights() throws {
        #expect(throws: WeightsError.otherModel(model: "inception_resnet_v2", weightsFor: "inception_v4")) {
            _ = try InceptionModel(.inceptionResNetV2, weights: try References.weights(.inceptionV4))
        }
        #expect(throws: WeightsError.otherModel(model: "inception_v4", weightsFor: "inception_resnet_v1_facenet")) {
            _ = try InceptionModel(.inceptionV4, weights: try References.weights(.inceptionResNetV1FaceNet))
        }
    }

    /// The checkpoint's metadata: the logits' class names and the input size are used (classification labels,
    /// preprocessing); a malformed entry, or names that do not match the classifier, are refused naming the entry.
    @Test func metadataGivesClassNamesAndInputSizeOrIsRefused() throws {
        let tensors = try Self.tensors(.inceptionV4)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("w-\(UUID()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        func write(_ metadata: [String: String]) throws {
            try SafeTensorsFile.write(tensors, metadata: metadata, to: url)
        }
        let names = (0..<1000).map { "kind \($0)" }
        try write(CheckpointMetadata(model: .inceptionV4, classNames: names, inputSize: 139).strings)
        let model = try InceptionModel(.inceptionV4, weights: url)
        #expect(model.classNames == names && model.inputSize == 139 && model.label(7).name == "kind 7")
        // At 139 the image is cropped to 139×139: the logits are the network's at that size.
        let image = try RGBImage(contentsOf: try Photos.imageURL("rocket.jpg"))
        let top = try model.classify([image], top: 1)[0][0]
        let batch = ModelName.inceptionV4.spec.preprocessing.batch([image], inputSize: 139)
        let direct = try model(nchw: batch.nhwcToNCHW())
        #expect(top.index == direct.scalars.indices.max { direct.scalars[$0] < direct.scalars[$1] }!)
        try write(["classes": "[\"a\", \"b\"]"])
        let mismatch = WeightsError.badMetadata(key: "classes", reason: "it names 2 classes, the classifier has 1000")
        #expect(throws: mismatch) {
            _ = try InceptionModel(.inceptionV4, weights: url)
        }
        try write(["classes": "{not json"])
        #expect(throws: WeightsError.badMetadata(key: "classes", reason: "not a JSON list of strings")) {
            _ = try InceptionModel(.inceptionV4, weights: url)
        }
        try write(["input_size": "99999"])
        #expect(throws: WeightsError.badMetadata(key: "input_size", reason: "'99999' is not a size in 1…4096")) {
            _ = try InceptionModel(.inceptionV4, weights: url)
        }
        try write(["repeats": "1,2"])
        #expect(throws: WeightsError.badMetadata(key: "repeats", reason: "'1,2' is not three counts in 1…64")) {
            _ = try InceptionModel(.inceptionV4, weights: url)
        }
    }

    @Test func facenetLogitsAreOptional() throws {
        // Without `logits.*` the face model loads as an embedder; with them it also classifies.
        let t = try Self.tensors(.inceptionResNetV1FaceNet).filter { !$0.name.hasPrefix("logits.") }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("w-\(UUID()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensorsFile.write(t, to: url)
        let embedder = try InceptionModel(.inceptionResNetV1FaceNet, weights: url)
        #expect(embedder.outputNames == ["embedding", "features"])
        #expect(try References.model(.inceptionResNetV1FaceNet).outputNames == ["embedding", "features", "logits"])
        let x = try References.tensor(.inceptionResNetV1FaceNet, "x_160.npy")
        #expect(try embedder(nchw: x) == (try References.model(.inceptionResNetV1FaceNet)(nchw: x)))
    }

    @Test func rejectsNonFiniteWeights() throws {
        var t = try Self.tensors(.inceptionV4)
        let i = t.firstIndex { $0.name == "features.0.bn.running_var" }!
        t[i].values[3] = .nan
        #expect(throws: WeightsError.nonFinite(key: "features.0.bn.running_var")) { try load(t) }
    }

    @Test func takesTheClassCountFromTheClassifier() throws {
        var t = try Self.tensors(.inceptionV4)
        let w = t.firstIndex { $0.name == "last_linear.weight" }!, b = t.firstIndex { $0.name == "last_linear.bias" }!
        t[w] = (t[w].name, [10, 1536], Array(t[w].values.prefix(10 * 1536)))
        t[b] = (t[b].name, [10], Array(t[b].values.prefix(10)))
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("w-\(UUID()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensorsFile.write(t, to: url)
        let model = try InceptionModel(.inceptionV4, weights: url)
        #expect(model.classes == 10)
        // The first ten logits of the 1000-class network, since the rows are the same.
        let x = try References.tensor(.inceptionV4, "x_139.npy")
        let full = try References.model(.inceptionV4)(nchw: x), small = try model(nchw: x)
        #expect(small.scalars == Array(full.scalars.prefix(10)))
    }
}

struct CommandLineTests {
    /// `inception models` lists every network with its parameter count (timm's and facenet-pytorch's for the released
    /// ones, architecture.md's for the paper ones), input size and weights source.
    @Test func modelsListsEveryNetwork() throws {
        let result = try runInception(["models", "--json"])
        #expect(result.status == 0)
        let rows = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [[String: Any]]
        let counts = Dictionary(uniqueKeysWithValues: rows.map { ($0["name"] as! String, $0["parameters"] as! Int) })
        #expect(counts == ["inception_v4": 42_679_816, "inception_resnet_v2": 55_843_464,
                           "inception_resnet_v2_paper": 32_433_928, "inception_resnet_v1": 22_756_328,
                           "inception_resnet_v1_facenet": 23_482_624])
        #expect(rows.first { $0["name"] as? String == "inception_v4" }?["weights"] as? String
                == "Hub: timm/inception_v4.tf_in1k")
        let table = try runInception(["models"])
        #expect(table.stdout.contains("inception_resnet_v1_facenet   23,482,624  160"))
    }

    /// `--threads` says its default once ("all cores"), not also the core count of the machine that printed it.
    @Test func summaryReportsTheParameterCountAsJSON() throws {
        let result = try runInception(["summary", "--model", "inception_v4", "--json"])
        #expect(result.status == 0)
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: Any]
        #expect(json["model"] as? String == "inception_v4")
        #expect(json["parameters"] as? Int == 42_679_816)
        #expect(json["macs"] as? Int == 12_253_974_624)
        let stages = json["stages"] as! [[String: Any]]
        #expect(stages.first { $0["name"] as? String == "reduction_b" }?["output_shape"] as? [Int] == [8, 8, 1536])
    }

    @Test func summaryAtASmallOddSize() throws {
        let result = try runInception(["summary", "--input-size", "139"])
        #expect(result.status == 0)
        let line = result.stdout.split(separator: "\n").first { $0.hasPrefix("inception_c.2 ") }
        #expect(line?.split(separator: " ", omittingEmptySubsequences: true) == ["inception_c.2", "3×3×1536",
            "4,553,088", "40,919,040"])
    }

    @Test(arguments: [
        (["summary", "--input-size", "60"], "Error: --input-size must be from 75 (the smallest inception_v4 takes) to "
         + "4096, not 60"),
        (["predict", "--weights", "/nonexistent.safetensors", "--input", "x.npy", "--output", "y.npy"],
         "error: cannot read safetensors file /nonexistent.safetensors: "),
    ])
    func errorsAreOneLineAndNonZero(_ arguments: [String], _ prefix: String) throws {
        let result = try runInception(arguments)
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix(prefix), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1)
    }

    @Test func predictRejectsAnInputOfTheWrongLayout() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cli-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let x = dir.appendingPathComponent("x.npy")
        try NPY.write(shape: [1, 80, 80, 3], values: [Float](repeating: 0, count: 80 * 80 * 3),
                      to: x)  // NHWC, not NCHW
        let result = try runInception(["predict", "--weights", try References.weights(.inceptionV4).path,
                                       "--input", x.path, "--output", dir.appendingPathComponent("y.npy").path])
        #expect(result.status == 1)
        #expect(result.stderr == "error: input must have 3 channels in (N, C, H, W), got shape [1, 80, 80, 3]\n")
    }

    /// `classes` means the logits' width: none for the face model without its classifier, the checkpoint's count
    /// with it — never the 512-wide embedding, its primary output.
    @Test func outputsAreNamedWithTheirWidths() {
        let bare = InceptionModel(.inceptionResNetV1FaceNet, randomSeed: 1)
        #expect(bare.classes == nil && bare.primaryOutput == "embedding"
                && bare.outputNames == ["embedding", "features"])
        #expect(bare.width(of: "embedding") == 512 && bare.width(of: "features") == 1792
                && bare.width(of: "logits") == nil)
        let face = InceptionModel(.inceptionResNetV1FaceNet, randomSeed: 1, classes: 7)
        #expect(face.classes == 7 && face.primaryOutput == "embedding" && face.embeddingOutput == "embedding")
        let v4 = InceptionModel(.inceptionV4, randomSeed: 1)
        #expect(v4.classes == 1000 && v4.primaryOutput == "logits" && v4.width(of: "features") == 1536)
        #expect(v4.embeddingOutput == "features")
    }
}
