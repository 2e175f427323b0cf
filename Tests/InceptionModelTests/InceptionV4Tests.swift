import Foundation
import Inception
import InceptionEngine
import InceptionIO
import InceptionModels
import Testing

/// Inception-v4 against timm's `inception_v4` on the same random weights (calibrated, non-trivial BatchNorm)
/// and real photos through timm's eval transform. Tolerance: 1e-4 relative L2 per sample.
@Suite(.serialized) struct InceptionV4Conformance {
    @Test(arguments: [299, 320, 139])
    func logitsMatchTimm(size: Int) throws {
        let model = try References.model(.inceptionV4)
        let x = try References.tensor(.inceptionV4, "x_\(size).npy")
        let logits = try model(nchw: x)
        for reference in ["logits_\(size).npy", "logits64_\(size).npy"] {
            let expected = try References.tensor(.inceptionV4, reference)
            let errors = perSampleRelativeError(logits, expected)
            #expect(errors.allSatisfy { $0 < 1e-4 }, "\(reference): relative errors \(errors)")
        }
    }

    static let blocks: [(name: String, build: @Sendable (Value) -> Value)] = [
        ("mixed_3a", InceptionV4.mixed3a), ("mixed_4a", InceptionV4.mixed4a), ("mixed_5a", InceptionV4.mixed5a),
        ("inception_a.0", InceptionV4.inceptionA), ("reduction_a", { reductionA($0, InceptionV4.Configuration().reductionA) }),
        ("inception_b.0", InceptionV4.inceptionB), ("reduction_b", InceptionV4.reductionB),
        ("inception_c.2", InceptionV4.inceptionC),
    ]

    @Test(arguments: blocks.map(\.name))
    func blockMatchesTimm(_ name: String) throws {
        let build = Self.blocks.first { $0.name == name }!.build
        let input = try References.tensor(.inceptionV4, "block_\(name)_in.npy")
        let expected = try References.tensor(.inceptionV4, "block_\(name)_out.npy")
        let g = GraphBuilder()
        let graph = g.finish(output: g.input(channels: input.shape[1]).scope(name, build))
        let file = try SafeTensorsFile(contentsOf: try References.weights(.inceptionV4))
        let block = try CompiledGraph(graph: graph) { try file.floats(ModelName.inceptionV4.checkpointKey($0)) }
        let output = try block.run(input.nchwToNHWC()).nhwcToNCHW()
        let errors = perSampleRelativeError(output, expected)
        #expect(errors.allSatisfy { $0 < 1e-5 }, "relative errors \(errors)")
    }

    @Test func predictCommandMatchesTimm() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("inception-predict-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let output = dir.appendingPathComponent("y.npy")
        let result = try runInception([
            "predict", "--model", "inception_v4", "--weights", try References.weights(.inceptionV4).path,
            "--input", try References.url(.inceptionV4, "x_299.npy").path, "--output", output.path, "--threads", "2",
        ])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let (shape, values) = try NPY.read(contentsOf: output)
        let expected = try References.tensor(.inceptionV4, "logits_299.npy")
        #expect(shape == expected.shape)
        let errors = perSampleRelativeError(Tensor(shape: shape, scalars: values), expected)
        #expect(errors.allSatisfy { $0 < 1e-4 }, "relative errors \(errors)")
    }

    @Test func inputBelowTheMinimumNamesIt() throws {
        let model = try References.model(.inceptionV4)
        #expect(throws: GraphError.inputTooSmall(height: 74, width: 80, minimum: 75)) {
            try model(nchw: Tensor(zeros: [1, 3, 74, 80]))
        }
        // 75 is the minimum: it runs, to a 1×1 final grid.
        #expect(try model(nchw: Tensor(zeros: [1, 3, 75, 75])).shape == [1, 1000])
    }
}
