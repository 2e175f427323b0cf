import Foundation
import Inception
import InceptionEngine
import InceptionIO
import InceptionModels
import InceptionONNX
import InceptionTraining
import InceptionReferences
import InceptionTestSupport
import Testing

/// A network is one entry: a sixth network declared only here, as a `ModelSpec`, is trained, loaded back from its
/// checkpoint, classified and exported to ONNX by the library with nothing else written for it — and ONNX Runtime
/// computes what we compute on its exported file.
struct ModelSpecTests {
    /// A small Inception network: a strided stem, one block of two branches (1×1; 1×1 then 3×3) concatenated, a
    /// residual-free head. Not registered (`ModelSpec.register`), so the command line's model list stays the five.
    static let toy = ModelName(ModelSpec(
        name: "toy_inception", classes: 2,
        preprocessing: Preprocessing(inputSize: 64, cropFraction: 0.875, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]),
        weightsNote: "none: a test's network", outputNote: "logits"
    ) { request in
        let g = GraphBuilder()
        var x = g.input(channels: 3).basicConv("stem", 16, (3, 3), stride: 2)
        x = x.scope("block") { x in
            concat(x.basicConv("branch0", 8, (1, 1)),
                   x.scope("branch1") { $0.basicConv("0", 8, (1, 1)).basicConv("1", 12, (3, 3), .same) })
        }
        let features = x.globalAveragePool()
        return g.finish(outputs: [.features: features, .logits: features.linear("classifier", request.classes!)],
                        primary: .logits)
    })

    @Test func aToyNetworkTrainsClassifiesAndExports() throws {
        let data = try References.dataset()
        defer { References.removeScratch(data) }
        let folder = data.deletingLastPathComponent().appendingPathComponent("run")
        // Train: one epoch of two steps from He-initialised weights; the checkpoint keeps the class names.
        let images = try ImageFolder(data.path, classes: nil)
        var configuration = TrainingConfiguration(
            model: Self.toy, classes: images.classNames!, inputSize: 64, epochs: 1, batchSize: 4,
            optimizer: OptimizerSettings(kind: .sgd), schedule: LearningRateSchedule(kind: .constant, base: 0.01),
            seed: 5)
        configuration.augmentation.flip = false
        let trainer = try Trainer(configuration, train: images, validation: nil, run: folder, initial: nil,
                                  resume: false)
        var losses: [Double] = []
        try trainer.train(progress: { losses.append($0.loss) })
        #expect(losses.count == trainer.stepsPerEpoch && losses.allSatisfy(\.isFinite), "\(losses)")

        // Load it back and classify the photos; export it and let ONNX Runtime run the same batch.
        let checkpoint = folder.appendingPathComponent("model.safetensors")
        let model = try InceptionModel(Self.toy, weights: checkpoint)
        let photos = try images.samples.prefix(3).map { try RGBImage(contentsOf: URL(fileURLWithPath: $0.path)) }
        let prepared = photos.map(model.prepare)
        let predictions = try model.classify(prepared: prepared, top: 2)
        #expect(predictions.allSatisfy { Set($0.map(\.label)) == Set(images.classNames!) })

        let file = folder.appendingPathComponent("toy.onnx"), input = folder.appendingPathComponent("x.npy")
        try ONNXExport.write(try ModelWeights(Self.toy, file: checkpoint), to: file)
        let x = Tensor(shape: [3, 64, 64, 3], scalars: prepared.flatMap { $0 }).nhwcToNCHW()
        try NPY.write(shape: x.shape, values: x.scalars, to: input)
        let manifest = folder.appendingPathComponent("manifest.json")
        try JSONSerialization.data(withJSONObject: [["model": file.path, "inputs": [input.path],
                                                     "out": folder.path]]).write(to: manifest)
        let python = try run(
            venvPython(), ["-W", "ignore", repositoryRoot.appendingPathComponent("scripts/onnx_check.py").path,
                           manifest.path])
        try #require(python.status == 0, "onnx_check.py: \(python.stderr)")
        let theirs = try NPY.read(contentsOf: folder.appendingPathComponent("x_logits.npy")).values
        let ours = try model(nchw: x, output: .logits)
        #expect(relativeError(ours.scalars, theirs) < 1e-5)
        // classify's probabilities are the softmax of those logits.
        for (i, top) in predictions.enumerated() {
            let row = theirs[(2 * i)..<(2 * i + 2)], m = row.max()!
            let softmax = row.map { exp(Double($0 - m)) / row.reduce(0) { $0 + exp(Double($1 - m)) } }
            for p in top { #expect(abs(Double(p.probability) - softmax[softmax.startIndex + p.index]) < 1e-5) }
        }
    }
}
