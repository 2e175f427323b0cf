import Foundation
import Inception
import InceptionEngine
import InceptionTraining
import InceptionIO
import InceptionReferences
import InceptionTestSupport
import Testing

/// Training against timm: one step in train mode from random weights (written by `scripts/make_references.py`,
/// fresh each run) — loss, every parameter's gradient, the SGD update and the BatchNorm running statistics. The
/// expected values are timm's in float64; see `training_step` in the script for why.
@Suite struct TrainingTests {
    @Test(arguments: [ModelName.inceptionV4, .inceptionResNetV2])
    func oneSGDStepMatchesTimm(_ name: ModelName) throws { try compareStep(name, auxiliaryHead: false) }

    /// The same at 299×299 with TF-slim's auxiliary classifier (torchvision's InceptionAux with timm's blocks on the
    /// reference side), loss = main + 0.4 · auxiliary: the backward pass starts at two outputs and meets at the 17×17
    /// map.
    @Test(arguments: [ModelName.inceptionV4, .inceptionResNetV2])
    func oneSGDStepWithAuxiliaryHeadMatchesTimm(_ name: ModelName) throws { try compareStep(name, auxiliaryHead: true) }

    func compareStep(_ name: ModelName, auxiliaryHead: Bool) throws {
        let prefix = auxiliaryHead ? "train_aux_" : "train_"
        let step = try JSONSerialization.jsonObject(with: Data(contentsOf: References.url(name, prefix
            + "step.json"))) as! [String: Any]
        let labels = step["labels"] as! [Int], expectedLoss = step["loss"] as! Double,
            losses = step["losses"] as! [Double]
        let graph = name.graph(auxiliaryHead: auxiliaryHead)
        // Both steps start from the same network weights; the auxiliary head's are in a file of their own, as in a run.
        var values = try name.trainingValues(for: name.graph(),
                                             weights: References.url(name, "train_weights.safetensors"), seed: 0)
        if auxiliaryHead {
            values.merge(try name.auxiliaryValues(for: graph,
                                                  weights: References.url(name, prefix
                                                      + "head.safetensors"))) { a, _ in a }
        }
        let trainer = TrainingGraph(graph: graph, values: values)
        trainer.dropoutRate = 0  // timm's default drop_rate for both
        let auxiliary = auxiliaryHead
            ? (output: OutputName.auxLogits, weight: Float(step["aux_weight"] as! Double)) : nil
        let routing = try SafeTensorsFile(contentsOf: References.url(name, prefix + "maxpool_routing.safetensors"))
        trainer.maxPoolRouting = try (0..<routing.entries.count).map {
            try routing.floats("maxpool\($0)").map { Int32($0) }
        }
        // timm's ReLU modules: `<BatchNorm>.act` after a convolution; `<block>.act` (`.relu` in Block8) after a sum.
        let relus = try SafeTensorsFile(contentsOf: References.url(name, prefix + "relu_masks.safetensors"))
        var masks: [String: [Float]] = [:]
        for node in graph.nodes {
            switch node.operation {
            case let .convolution(_, p, .relu): masks[node.name] = try relus.floats(name.checkpointKey(p.batchNorm!)
                + ".act")
            case .residual(_, .relu):
                let block = name.checkpointKey(node.stage + ".")
                masks[node.name] = try relus.floats(relus.entries[block + "act"] != nil ? block + "act" : block
                                                    + "relu")
            default: break
            }
        }
        #expect(masks.count == relus.entries.count)
        trainer.reluMasks = masks
        let x = try References.tensor(name, prefix + "x.npy").nchwToNHWC()
        // A step on another batch first, then the parameters and running statistics put back: the compared step runs on
        // the buffers the first one left behind (the step's maps are kept from one step to the next), as in training.
        let initial = trainer.values
        let mirrored = Tensor(shape: x.shape, scalars: x.scalars.reversed())
        _ = try trainer.step(mirrored, labels: labels.reversed(), labelSmoothing: 0.1, auxiliary: auxiliary)
        #expect(trainer.values != initial)
        trainer.values = initial
        let result = try trainer.step(x, labels: labels, labelSmoothing: Float(step["label_smoothing"] as! Double),
                                      auxiliary: auxiliary)
        #expect(abs(result.total - expectedLoss) / abs(expectedLoss) < 1e-5,
                "loss \(result.total) vs timm \(expectedLoss)")
        #expect(abs(result.loss - losses[0]) / losses[0] < 1e-5, "main loss \(result.loss) vs timm \(losses[0])")
        if auxiliaryHead {
            #expect(abs(result.auxiliaryLoss! - losses[1]) / losses[1] < 1e-5,
                    "auxiliary loss \(result.auxiliaryLoss!) vs \(losses[1])")
        }

        // With float64's ReLU and max-pool decisions taken, every gradient within 1e-3 of timm's float64 one, except
        // gradients that are zero in exact arithmetic: those must be zero to float32 noise. Where timm's own float32
        // gradient misses 1e-3 (the stem's BatchNorm parameters sum cancelling terms through the whole depth: 1.2e-3
        // in one run of ten), ours must be within twice timm's float32 error.
        let gradients = try SafeTensorsFile(contentsOf: References.url(name, prefix + "gradients.safetensors"))
        let timm32 = step["timm_fp32_gradient_errors"] as! [String: Double]
        var expected: [String: [Float]] = [:], squares = 0.0, count = 0
        for spec in graph.parameters where !spec.isBuffer {
            let g = try gradients.floats(name.checkpointKey(spec.name))
            expected[spec.name] = g
            squares += g.reduce(0.0) { $0 + Double($1) * Double($1) }
            count += g.count
        }
        let typical = (squares / Double(count)).squareRoot()  // RMS of one gradient element over the network
        var errors: [Double] = [], above = 0, worst = (key: "", error: 0.0)
        for spec in graph.parameters where !spec.isBuffer {
            let key = name.checkpointKey(spec.name), ours = trainer.gradients[spec.name]!, theirs = expected[spec.name]!
            let error = relativeError(ours, theirs)
            let rms = (theirs.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(spec.count)).squareRoot()
            let errorRMS = error * rms
            let exactZero = rms < 1e-6 * typical
            errors.append(error)
            if error >= 1e-3 { above += 1 }
            if !exactZero && error > worst.error { worst = (key, error) }
            let allowed = exactZero ? 1e-3 : max(1e-3, 2 * timm32[key]!)
            let ok = error < allowed || (exactZero && errorRMS < 1e-3 * typical)
            #expect(ok, "gradient of \(key): relative error \(error), timm float32's \(timm32[key]!)")
        }
        errors.sort()
        let timmAbove = timm32.values.filter { $0 >= 1e-3 }.count
        print("\(name)\(auxiliaryHead ? " with the auxiliary head" : ""): loss \(result.total) vs \(expectedLoss); "
              + "gradient error median \(errors[errors.count / 2]), "
              + "\(above) of \(errors.count) above 1e-3 (timm float32: \(timmAbove)); "
              + "largest apart from exact zeros \(worst.error) (\(worst.key))")
        #expect(above <= max(timmAbove, errors.count / 100),
                "\(above) gradients above 1e-3, timm float32 has \(timmAbove)")

        let optimizer = Optimizer(OptimizerSettings(kind: .sgd, momentum: Float(step["momentum"] as! Double),
                                                    weightDecay: Float(step["weight_decay"] as! Double)),
                                  parameters: graph.parameters)
        optimizer.step(&trainer.values, gradients: trainer.gradients, learningRate: Float(step["lr"] as! Double))
        let after = try SafeTensorsFile(contentsOf: References.url(name, prefix + "after.safetensors"))
        for spec in graph.parameters {
            let key = name.checkpointKey(spec.name)
            let error = relativeError(trainer.values[spec.name]!, try after.floats(key))
            #expect(error < 1e-5, "\(key) after the step: relative error \(error)")
        }
    }

    /// TF-slim's AuxLogits variables number 3,359,337 on inception_v4 and 3,367,529 on inception_resnet_v2 at 1001
    /// classes (architecture.md); ours has the γ of its two BatchNorms besides (TF-slim's have none): 128 + 768.
    @Test func auxiliaryHeadHasTFSlimsParameters() throws {
        for (name, tfSlim) in [(ModelName.inceptionV4, 3_359_337), (.inceptionResNetV2, 3_367_529)] {
            let plain = name.graph(classes: 1001), graph = name.graph(classes: 1001, auxiliaryHead: true)
            #expect(graph.parameterCount - plain.parameterCount == tfSlim + 128 + 768)
            #expect(plain.outputs["aux_logits"] == nil)
            let shapes = try graph.shapes(n: 2, h: 299, w: 299)
            let aux = shapes[graph.outputs["aux_logits"]!]
            #expect([aux.n, aux.h, aux.w, aux.c] as [Int] == [2, 1, 1, 1001])
            // The head reads the 17×17 map: its average pool is the first node of its stage.
            let pool = graph.nodes.firstIndex { $0.stage == "aux_logits" }!
            let input = shapes[graph.nodes[pool].inputs[0]]
            #expect(input.h == 17 && input.w == 17 && shapes[pool].h == 5)
        }
    }

    @Test func threeRMSPropStepsMatchTimmRMSpropTF() throws {
        let url = References.directory.appendingPathComponent("optimizers/rmsprop.safetensors")
        guard FileManager.default.fileExists(atPath: url.path) else { throw References.Missing(path: url.path) }
        let file = try SafeTensorsFile(contentsOf: url)
        let names = ["conv.weight", "bn.weight", "fc.bias"]
        // The optimiser decays by role: the convolution's weight, not the BatchNorm weight or the bias.
        var values: [String: [Float]] = [:]
        for n in names { values[n] = try file.floats("\(n).initial") }
        let roles: [ParameterRole] = [.weight, .normScale, .bias]
        let parameters = zip(names, roles).map { ParameterSpec(name: $0, shape: [values[$0]!.count], role: $1) }
        let rates = try file.floats("learning_rates")
        let optimizer = Optimizer(.paper, parameters: parameters)
        for (step, lr) in rates.enumerated() {
            var gradients: [String: [Float]] = [:]
            for n in names { gradients[n] = try file.floats("\(n).grad\(step)") }
            optimizer.step(&values, gradients: gradients, learningRate: lr)
        }
        for n in names {
            let initial = try file.floats("\(n).initial"), expected = try file.floats("\(n).final")
            // Compare the updates, not the weights, so the tolerance means something.
            let ours = zip(values[n]!, initial).map { $0 - $1 }, theirs = zip(expected, initial).map { $0 - $1 }
            let error = relativeError(ours, theirs)
            #expect(error < 1e-4, "\(n): update differs from RMSpropTF's by \(error)")
        }
    }
}
