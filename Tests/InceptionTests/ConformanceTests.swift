import Foundation
import Inception
import InceptionEngine
import InceptionIO
import InceptionReferences
import InceptionTestSupport
import Testing

/// Our networks against implementations no one here wrote — timm's `inception_v4` and `inception_resnet_v2`,
/// facenet-pytorch's `InceptionResnetV1` — on the same random weights (BatchNorm randomised and calibrated) and
/// real photos through each model's eval transform, at several sizes and batch sizes.
@Suite(.serialized) struct Conformance {
    struct Case: Sendable, CustomTestStringConvertible {
        let model: ModelName, size: Int, output: String
        var testDescription: String { "\(model) \(output) at \(size)" }
    }

    static let cases: [Case] = [
        Case(model: .inceptionV4, size: 299, output: "logits"), Case(model: .inceptionV4, size: 320, output: "logits"),
        Case(model: .inceptionV4, size: 139, output: "logits"), Case(model: .inceptionV4, size: 160, output: "logits"),
        Case(model: .inceptionResNetV2, size: 299, output: "logits"),
        Case(model: .inceptionResNetV2, size: 320, output: "logits"),
        Case(model: .inceptionResNetV2, size: 139, output: "logits"),
        Case(model: .inceptionResNetV2, size: 160, output: "logits"),
        Case(model: .inceptionResNetV1FaceNet, size: 160, output: "embedding"),
        Case(model: .inceptionResNetV1FaceNet, size: 299, output: "embedding"),
        Case(model: .inceptionResNetV1FaceNet, size: 139, output: "embedding"),
        Case(model: .inceptionResNetV1FaceNet, size: 320, output: "embedding"),
        Case(model: .inceptionResNetV1FaceNet, size: 160, output: "logits"),
    ]

    /// Relative L2 error ≤ 1e-4 per sample against the reference in float32 and in float64; for embeddings also
    /// cosine similarity ≥ 0.99999 per sample.
    @Test(arguments: cases)
    func outputMatchesReference(_ c: Case) throws {
        let model = try References.model(c.model)
        let x = try References.tensor(c.model, "x_\(c.size).npy")
        let y = try model(nchw: x, output: OutputName(c.output))
        for reference in ["\(c.output)_\(c.size).npy", "\(c.output)64_\(c.size).npy"] {
            let expected = try References.tensor(c.model, reference)
            let errors = perSampleRelativeError(y, expected)
            #expect(errors.allSatisfy { $0 < 1e-4 }, "\(reference): relative errors \(errors)")
            if c.output == "embedding" {
                let cosines = perSampleCosine(y, expected)
                #expect(cosines.allSatisfy { $0 >= 0.99999 }, "\(reference): cosines \(cosines)")
            }
        }
    }

    /// Every algorithm choice is held to the same bar: Winograd on every layer that allows it, and none at all.
    @Test(arguments: [(ModelName.inceptionV4, 320, "logits"), (.inceptionResNetV2, 299, "logits"),
                      (.inceptionResNetV1FaceNet, 160, "embedding")],
                      [ConvolutionAlgorithms.winogradWherePossible, .direct])
    // The module-qualified type: the @Test macro writes `(T).self`, which the typealias of `import Inception` makes
    // ambiguous.
    func everyAlgorithmMatchesReference(_ c: (ModelName, Int, String),
                                        _ algorithms: InceptionEngine.ConvolutionAlgorithms) throws {
        let model = try InceptionModel(c.0, weights: try References.weights(c.0), algorithms: algorithms)
        #expect(algorithms == .direct ? model.compiled.winogradLayers == 0 : model.compiled.winogradLayers > 20)
        let y = try model(nchw: try References.tensor(c.0, "x_\(c.1).npy"), output: OutputName(c.2))
        let errors = perSampleRelativeError(y, try References.tensor(c.0, "\(c.2)64_\(c.1).npy"))
        #expect(errors.allSatisfy { $0 < 1e-4 }, "relative errors \(errors)")
    }

    /// A measured table may put any 3×3, 1×3 or 3×1 layer on F(6, 3) or F(4, 3), whatever its size: with every such
    /// layer at each tile, the bar holds.
    @Test(arguments: [(ModelName.inceptionV4, 320, "logits"), (.inceptionResNetV2, 299, "logits"),
                      (.inceptionResNetV1FaceNet, 160, "embedding")], [4, 6])
    func everyWinogradTileMatchesReference(_ c: (ModelName, Int, String), _ tile: Int) throws {
        let graph = c.0.graph(), size = c.0.spec.inputSize
        let shapes = try graph.shapes(n: 1, h: size, w: size)
        var choices: [String: ConvolutionChoice] = [:]
        for (i, node) in graph.nodes.enumerated() {
            guard case let .convolution(g, _, _) = node.operation else { continue }
            choices[AlgorithmTable.key(g, side: max(shapes[i].h, shapes[i].w))] = .winograd(tile: tile)
        }
        let table = AlgorithmTable(cpu: "test", isa: "test", choices: choices)
        try everyAlgorithmMatchesReference(c, .measured(table))
    }

    static let blocks: [(ModelName, String)] =
        ["mixed_3a", "mixed_4a", "mixed_5a", "inception_a.0", "reduction_a", "inception_b.0", "reduction_b",
         "inception_c.2"]
            .map { (.inceptionV4, $0) }
        + ["mixed_5b", "inception_resnet_a.0", "reduction_a", "inception_resnet_b.3", "reduction_b",
           "inception_resnet_c.8",
           "inception_resnet_c_last"].map { (.inceptionResNetV2, $0) }
        + ["inception_resnet_a.0", "reduction_a", "inception_resnet_b.9", "reduction_b", "inception_resnet_c.4",
           "inception_resnet_c_last"].map { (.inceptionResNetV1FaceNet, $0) }

    /// Each block type alone, fed the reference's own input to it: 1e-5 relative per sample.
    @Test(arguments: blocks.map { "\($0.0) \($0.1)" })
    func blockMatchesReference(_ label: String) throws {
        let parts = label.split(separator: " ").map(String.init)
        let (name, stage) = (ModelName(rawValue: parts[0])!, parts[1])
        let input = try References.tensor(name, "block_\(stage)_in.npy")
        let expected = try References.tensor(name, "block_\(stage)_out.npy")
        let graph = try #require(name.graph().subgraph(stage: stage))
        let file = try SafeTensorsFile(contentsOf: try References.weights(name))
        let block = try CompiledGraph(graph: graph) { try file.floats(name.checkpointKey($0)) }
        let output = try block.run(input.nchwToNHWC()).nhwcToNCHW()
        let errors = perSampleRelativeError(output, expected)
        #expect(errors.allSatisfy { $0 < 1e-5 }, "relative errors \(errors)")
    }

    @Test(arguments: [(ModelName.inceptionV4, "logits", 299), (.inceptionResNetV2, "logits", 320),
                      (.inceptionResNetV1FaceNet, "embedding", 160)])
    func predictCommandMatchesReference(_ name: ModelName, _ output: String, _ size: Int) throws {
        try predictCommandMatchesReference(name, output, size, isa: nil)
    }

    /// The same at every instruction-set level this CPU supports, forced with INCEPTION_ISA (the best level is the
    /// default, tested above); the command reports the level it ran at.
    @Test(arguments: Kernels.supported.dropFirst().map(\.name))
    func predictCommandMatchesReferenceAtLowerLevels(_ isa: String) throws {
        for (name, output, size) in [(ModelName.inceptionV4, "logits", 299),
                                     (.inceptionResNetV1FaceNet, "embedding", 160)] {
            try predictCommandMatchesReference(name, output, size, isa: isa)
        }
        let summary = try runInception(["summary", "--model", "inception_resnet_v1_facenet"],
                                       environment: ["INCEPTION_ISA": isa])
        let levels = Kernels.supported.map(\.name).joined(separator: ", ")
        #expect(summary.stdout.contains("kernels: \(isa) (of \(levels) on this CPU)"))
    }

    func predictCommandMatchesReference(_ name: ModelName, _ output: String, _ size: Int, isa: String?) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("inception-predict-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        func predict(threads: Int) throws -> [Float] {
            let y = dir.appendingPathComponent("y\(threads).npy")
            let result = try runInception([
                "predict", "--model", name.rawValue, "--weights", try References.weights(name).path,
                "--input", try References.url(name, "x_\(size).npy").path, "--output", y.path, "--threads",
                    "\(threads)",
            ], environment: isa.map { ["INCEPTION_ISA": $0] } ?? [:])
            #expect(result.status == 0, "stderr: \(result.stderr)")
            return try NPY.read(contentsOf: y).values
        }
        // At a forced level, bitwise the same whatever the thread count (the best level is checked in
        // ConcurrencyAndDeterminism).
        let twoThreads = try predict(threads: 2)
        if let isa { #expect(try predict(threads: 1) == twoThreads, "\(isa): 1 and 2 threads differ") }
        let (shape, values) = try NPY.read(contentsOf: dir.appendingPathComponent("y2.npy"))
        let expected = try References.tensor(name, "\(output)_\(size).npy")
        #expect(shape == expected.shape)
        let errors = perSampleRelativeError(Tensor(shape: shape, scalars: values), expected)
        #expect(errors.allSatisfy { $0 < 1e-4 }, "\(isa ?? "best level"): relative errors \(errors)")
    }

    @Test func inputBelowTheMinimumNamesIt() throws {
        let model = try References.model(.inceptionV4)
        #expect(throws: GraphError.inputTooSmall(height: 74, width: 80, minimum: 75)) {
            try model(nchw: Tensor(zeros: [1, 3, 74, 80]))
        }
        // 75 is the minimum: it runs, to a 1×1 final grid.
        #expect(try model(nchw: Tensor(zeros: [1, 3, 75, 75])).shape == [1, 1000])
    }

    @Test func unknownOutputIsAClearError() throws {
        let model = try References.model(.inceptionV4)
        #expect(throws: InputError.unknownOutput("embedding", model: "inception_v4",
                                                 available: ["features", "logits"])) {
            try model(nchw: Tensor(zeros: [1, 3, 75, 75]), output: "embedding")
        }
    }
}


/// Winograd or not per layer from a table measured on this CPU (`bench kernels --save`), else the built-in rule.
struct AlgorithmChoiceTests {
    /// The layers of facenet that can run by Winograd, keyed as the table keys them, with the built-in rule's choice.
    static func candidates() throws -> [(key: String, automatic: Bool)] {
        let graph = ModelName.inceptionResNetV1FaceNet.graph()
        let shapes = try graph.shapes(n: 1, h: 160, w: 160)
        var seen = Set<String>(), result: [(String, Bool)] = []
        for (i, node) in graph.nodes.enumerated() {
            guard case let .convolution(g, _, _) = node.operation, g.strideH == 1, g.kernelH * g.kernelW > 1 else {
                continue
            }
            let side = max(shapes[i].h, shapes[i].w)
            let key = AlgorithmTable.key(g, side: side)
            if seen.insert(key).inserted {
                let automatic = ConvolutionAlgorithms.automatic.choice(g, side: side) != .direct
                result.append((key, automatic))
            }
        }
        return result
    }

    @Test func aMeasuredTableDecidesEachLayer() throws {
        let layers = try Self.candidates()
        let automatic = InceptionModel(.inceptionResNetV1FaceNet, randomSeed: 3, algorithms: .automatic).compiled
        #expect(automatic.winogradLayers > 0 && layers.contains { !$0.automatic })
        // Everything the rule runs by Winograd, measured slower: no Winograd layer at all.
        func table(_ choice: ConvolutionChoice) -> AlgorithmTable {
            AlgorithmTable(cpu: "test", isa: "test",
                           choices: Dictionary(uniqueKeysWithValues: layers.map { ($0.key, choice) }))
        }
        func model(_ algorithms: ConvolutionAlgorithms) -> CompiledGraph {
            InceptionModel(.inceptionResNetV1FaceNet, randomSeed: 3, algorithms: algorithms).compiled
        }
        #expect(model(.measured(table(.direct))).winogradLayers == 0)
        // Everything measured faster by Winograd: every candidate runs by it, more than the rule picks.
        #expect(model(.measured(table(.winograd(tile: nil)))).winogradLayers > automatic.winogradLayers)
        // The tile a table names is the tile each 3-tap axis runs (7-tap axes keep F(4, 7)); the rule mixes them.
        let four = model(.measured(table(.winograd(tile: 4)))).winogradTiles
        let six = model(.measured(table(.winograd(tile: 6)))).winogradTiles
        let all = model(.measured(table(.winograd(tile: nil)))).winogradLayers
        #expect(four.count == all && six.count == all && four.allSatisfy { $0.h != 6 && $0.w != 6 })
        // Layer by layer, a 3-tap axis at 4 in one is at 6 in the other; 1- and 7-tap axes are the same in both.
        let axes = zip(four, six).flatMap { [($0.h, $1.h), ($0.w, $1.w)] }
        #expect(axes.allSatisfy { $0 == $1 || ($0 == 4 && $1 == 6) } && axes.contains { $0 != $1 })
        #expect(Set(automatic.winogradTiles.map(\.h)).isSuperset(of: [4, 6]))
        // A table that lists nothing is the rule.
        #expect(model(.measured(AlgorithmTable(cpu: "test", isa: "test"))).winogradLayers == automatic.winogradLayers)
    }

    /// `bench kernels --save` writes the table every later run reads; `summary` says which choices are in force.
    /// (Run by its older spelling, `bench --kernels`, which must keep working.)
    @Test func benchKernelsSavesTheTableLaterRunsUse() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("kernel-choices-\(UUID()).json")
        defer { try? FileManager.default.removeItem(at: file) }
        let environment = ["INCEPTION_KERNEL_TABLE": file.path]
        let before = try runInception(["summary", "--model", "inception_resnet_v1_facenet"], environment: environment)
        #expect(before.stdout.contains("algorithm choices: the built-in rule"))
        let bench = try runInception(
            ["bench", "--kernels", "--model", "inception_resnet_v1_facenet", "--runs", "1", "--save"],
            environment: environment)
        #expect(bench.status == 0 && bench.stderr.hasPrefix("saved "), "\(bench.stderr)")
        let table = try JSONDecoder().decode(AlgorithmTable.self, from: Data(contentsOf: file))
        let keys = Set(try Self.candidates().map(\.key))
        #expect(table.isa == Kernels.current.name && Set(table.choices.keys) == keys)
        #expect(!(table.tiles ?? [:]).isEmpty && table.build != nil)
        #expect((table.tiles ?? [:]).values.allSatisfy { Kernels.current.tiles.contains($0) })
        let after = try runInception(["summary", "--model", "inception_resnet_v1_facenet"], environment: environment)
        #expect(after.stdout.contains("algorithm choices: measured on this CPU for \(table.choices.count) layers"))
    }

    /// A model's first load measures its register tiles (one line on stderr) and keeps them; the next load measures
    /// nothing and says nothing; `INCEPTION_TUNE=0` measures nothing and writes nothing; `summary --tiles` names
    /// each layer's tile and where it came from.
    @Test func firstLoadMeasuresTilesOnceAndKeepsThem() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("kernel-choices-\(UUID()).json")
        defer { try? FileManager.default.removeItem(at: file) }
        let bench = ["bench", "--model", "inception_resnet_v1_facenet", "--runs", "1", "--warmup", "0"]
        let off = try runInception(bench, environment: ["INCEPTION_KERNEL_TABLE": file.path, "INCEPTION_TUNE": "0"])
        #expect(off.status == 0 && !off.stderr.contains("measuring"))
        #expect(!FileManager.default.fileExists(atPath: file.path))
        let environment = ["INCEPTION_KERNEL_TABLE": file.path, "INCEPTION_TUNE": "1"]
        let first = try runInception(bench, environment: environment)
        guard Kernels.current.tiles.count > 1 else {
            // Baseline x86-64 has one candidate: nothing to measure.
            #expect(first.status == 0 && first.stderr.isEmpty)
            return
        }
        let lines = first.stderr.split(separator: "\n")
        let line = try #require(lines.first { $0.hasPrefix("measuring the register tiles") })
        #expect(first.status == 0 && lines.count == 1, "\(first.stderr)")
        let table = try JSONDecoder().decode(AlgorithmTable.self, from: Data(contentsOf: file))
        #expect(line.contains("of \(table.tiles?.count ?? -1) layers") && table.build != nil && table.choices.isEmpty)
        let second = try runInception(bench, environment: environment)
        #expect(second.status == 0 && second.stderr.isEmpty, "\(second.stderr)")
        let summary = try runInception(["summary", "--model", "inception_resnet_v1_facenet", "--tiles"],
                                       environment: environment)
        let listed = summary.stdout.split(separator: "\n").filter { $0.hasSuffix("(measured)") }
        #expect(summary.stdout.contains("(all measured on this CPU)") && listed.count > table.tiles!.count / 2)
        #expect(summary.stdout.contains("algorithm choices: the built-in rule"))
    }
}
