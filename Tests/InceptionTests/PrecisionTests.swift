import Foundation
import Inception
import InceptionEngine
import InceptionIO
import InceptionReferences
import InceptionTestSupport
import Testing

/// bf16 and int8 on the three networks with references (their calibrated reference weights, real photos): how far
/// each is from fp32 — itself timm's and facenet-pytorch's to 1e-5 —, int8 against ONNX Runtime running the same
/// quantisation (QuantizeLinear/DequantizeLinear), the quantised checkpoint's strictness, and the one-line refusals.
@Suite(.serialized) struct PrecisionTests {
    static let models: [ModelName] = [.inceptionV4, .inceptionResNetV2, .inceptionResNetV1FaceNet]

    /// Every bf16 route this CPU runs, as `predict`'s environment: AMX (the instructions where the CPU has them, else
    /// their emulator) and AVX512-BF16 where the CPU has it.
    static let bf16Routes: [(label: String, environment: [String: String])] = {
        var routes = [AMX.instructionsUsable ? ("amx-bf16", ["INCEPTION_AMX": ""])
                                             : ("amx-bf16 emulated", ["INCEPTION_AMX": "emulate"])]
        if ReducedKernels.forLevel(Kernels.supported[0], amx: nil).bf16 != nil {
            routes.append(("avx512-bf16", ["INCEPTION_AMX": "off"]))
        }
        return routes
    }()

    /// `outputs` of the reference weights at bf16 through `predict` in `environment` (a route).
    static func bf16Outputs(_ name: ModelName, _ environment: [String: String], in folder: URL,
                            logits: Bool = true) throws -> [String: Tensor]
    {
        let x = try References.photos(name, 3), input = folder.appendingPathComponent("\(name.rawValue).npy")
        try NPY.write(shape: x.shape, values: x.scalars, to: input)
        var outputs: [String: Tensor] = [:]
        let results = name == .inceptionResNetV1FaceNet ? [("features", "embedding")]
            : [("features", "features")] + (logits ? [("logits", "logits")] : [])
        for (key, result) in results {
            let output = folder.appendingPathComponent("\(name.rawValue)-\(result).npy")
            let cli = try runInception(["predict", "--model", name.rawValue, "--weights", References.weights(name).path,
                                        "--precision", "bf16", "--result", result, "--input", input.path,
                                        "--output", output.path], environment: environment)
            try #require(cli.status == 0, "\(cli.stderr)")
            let npy = try NPY.read(contentsOf: output)
            outputs[key] = Tensor(shape: npy.shape, scalars: npy.values)
        }
        return outputs
    }

    /// The photos' pooled features (the face model's embedding) and, for the classifiers, their logits.
    static func outputs(_ model: InceptionModel) throws -> [String: Tensor] {
        let x = try References.photos(model.name, 3)
        var outputs = ["features": try model(nchw: x, output: model.name == .inceptionResNetV1FaceNet ? "embedding"
                                                                                                       : "features")]
        if model.name != .inceptionResNetV1FaceNet { outputs["logits"] = try model(nchw: x, output: "logits") }
        return outputs
    }

    /// The smallest cosine between matching rows.
    static func cosine(_ a: Tensor, _ b: Tensor) -> Double {
        let n = a.shape[0], per = a.count / n
        return (0..<n).map { i in
            let (x, y) = (a.scalars[(i * per)..<((i + 1) * per)], b.scalars[(i * per)..<((i + 1) * per)])
            let dot = zip(x, y).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let nx = x.reduce(0.0) { $0 + Double($1) * Double($1) }, ny = y.reduce(0.0) { $0 + Double($1) * Double($1) }
            return dot / (nx * ny).squareRoot()
        }.min()!
    }

    /// Each photo keeps its fp32 class unless fp32's margin between its two best classes is within the logits'
    /// deviation (then either is a fair answer: the reference heads' margins are as small as 0.14).
    static func keepsClasses(_ logits: Tensor, _ fp32: Tensor) -> Bool {
        let n = logits.shape[0], per = logits.count / n
        return (0..<n).allSatisfy { i in
            let (x, y) = (Array(logits.scalars[(i * per)..<((i + 1) * per)]),
                          Array(fp32.scalars[(i * per)..<((i + 1) * per)]))
            let sorted = y.sorted(by: >), best = y.firstIndex(of: sorted[0])!
            let deviation = (zip(x, y).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
                             / Double(per)).squareRoot()
            return x.firstIndex(of: x.max()!) == best || Double(sorted[0] - sorted[1]) < 3 * deviation
        }
    }

    /// bf16 from the fp32 checkpoints, converted at load: cosine ≥ 0.999 (the issue's bar for the face embedding;
    /// measured ≥ 0.9995), features within 5 % (measured 1.0–1.2 %, the face embedding 2.8 %).
    /// Every bf16 route this CPU runs (AMX through its emulator where the CPU has no AMX).
    @Test func bf16IsCloseToFP32() throws {
        let folder = try scratchDirectory("bf16-fp32")
        defer { try? FileManager.default.removeItem(at: folder) }
        for name in Self.models {
            let fp32 = try Self.outputs(References.model(name))
            for (label, environment) in Self.bf16Routes {
                let bf16 = try Self.bf16Outputs(name, environment, in: folder)
                try Self.expectClose(name, label, bf16, fp32, features: 0.05, cosine: 0.999)
            }
        }
    }

    /// bf16 against PyTorch computing the same bf16 (scripts/bf16_reference.py: BatchNorm folded, conv weights and
    /// conv inputs rounded to bf16, everything else float32). Two correct bf16 implementations drift apart: a sum
    /// that differs in its last bit can round to the neighbouring bf16 at the next layer's input. PyTorch's own two
    /// orders of summation (float32 and float64) give the measure: ours is within twice their distance of PyTorch's
    /// (measured 0.10–0.54 % against 0.10–0.52 %), while fp32 lies 5–12× further. Every bf16 route this CPU runs.
    @Test func bf16IsPyTorchsBF16() throws {
        let folder = try scratchDirectory("bf16-torch")
        defer { try? FileManager.default.removeItem(at: folder) }
        let script = repositoryRoot.appendingPathComponent("scripts/bf16_reference.py").path
        for name in Self.models {
            let x = try References.photos(name, 3), input = folder.appendingPathComponent("\(name.rawValue).npy")
            try NPY.write(shape: x.shape, values: x.scalars, to: input)
            let python = try run(venvPython(), ["-W", "ignore", script, name.rawValue,
                                                try References.weights(name).path, folder.path, input.path])
            try #require(python.status == 0, "bf16_reference.py: \(python.stderr)")
            func torch(_ suffix: String) throws -> [Float] {
                try NPY.read(contentsOf: folder.appendingPathComponent("\(name.rawValue)_features\(suffix).npy")).values
            }
            let (theirs, theirs64) = (try torch(""), try torch("64"))
            let output: OutputName = name == .inceptionResNetV1FaceNet ? .embedding : .features
            let fp32 = try References.model(name)(nchw: x, output: output).scalars
            for (label, environment) in Self.bf16Routes {
                let outputs = try Self.bf16Outputs(name, environment, in: folder, logits: false)
                let ours = try #require(outputs["features"]).scalars
                let distance = min(relativeError(ours, theirs), relativeError(ours, theirs64))
                Self.expectWithinPeerSpread("\(label) \(name) against PyTorch's bf16", distance: distance,
                                            spread: relativeError(theirs64, theirs), slack: 1e-6,
                                            fp32: relativeError(fp32, theirs), fp32Factor: 3)
            }
        }
    }

    /// int8 from `inception quantize`: cosine ≥ 0.995 (the issue's bar; measured ≥ 0.997), features within 12 %
    /// (measured 2.5–2.7 %, the face embedding 6.5 %), the same classes.
    @Test func int8IsCloseToFP32() throws {
        let folder = try scratchDirectory("int8")
        defer { try? FileManager.default.removeItem(at: folder) }
        for name in Self.models {
            let fp32 = try Self.outputs(References.model(name))
            let weights = try References.quantized(name, into: folder)
            let model = try InceptionModel(name, weights: weights, precision: .int8)
            try Self.expectClose(name, "int8", Self.outputs(model), fp32, features: 0.12, cosine: 0.995)
        }
    }

    /// Two correct reduced-precision implementations drift apart by as much as the peer drifts from itself (its
    /// `spread`): ours must lie within twice that (+ `slack`) of the peer, and fp32 more than `fp32Factor` times as
    /// far, so that the comparison resolves a quantisation applied differently.
    static func expectWithinPeerSpread(_ label: String, distance: Double, spread: Double, slack: Double,
                                       fp32: Double, fp32Factor: Double) {
        print("\(label): \(distance); the peer's own spread \(spread); fp32 \(fp32)")
        #expect(distance <= 2 * spread + slack, "\(label): \(distance) against a spread of \(spread)")
        #expect(fp32 > fp32Factor * distance, "\(label): fp32 is only \(fp32) away")
    }

    static func expectClose(_ name: ModelName, _ precision: String, _ ours: [String: Tensor],
                            _ fp32: [String: Tensor], features: Double, cosine: Double) throws {
        let (x, y) = (try #require(ours["features"]), try #require(fp32["features"]))
        let (error, similarity) = (relativeError(x.scalars, y.scalars), Self.cosine(x, y))
        print("\(precision) \(name): features \(error) from fp32, cosine ≥ \(similarity)")
        #expect(error < features && error > 1e-4, "\(name) \(precision): \(error)")
        #expect(similarity >= cosine, "\(name) \(precision): cosine \(similarity)")
        if let logits = ours["logits"], let reference = fp32["logits"] {
            #expect(Self.keepsClasses(logits, reference), "\(name) \(precision) changed a class")
        }
    }

    /// int8 against ONNX Runtime running the exported file (QuantizeLinear/DequantizeLinear on each int8 layer's
    /// input, float weights: the same quantisation, without ORT's graph rewrites). An int8 network is chaotic: a
    /// value on a rounding boundary moves a whole quantum, and the next layers carry it — a relative change of 1e-6
    /// in the photos moves the face embedding by ~1–2 % in either implementation. So the bar is ORT's own spread:
    /// ours is at most twice as far from ORT as ORT is from itself on those nudged photos, while int8 lies 3–4× that
    /// far from fp32 (a quantisation applied differently would be as far).
    @Test func int8RunsAsONNXRuntimeRunsItsQuantisation() throws {
        let folder = try scratchDirectory("int8-onnx")
        defer { try? FileManager.default.removeItem(at: folder) }
        let name = ModelName.inceptionResNetV1FaceNet
        let weights = try References.quantized(name, into: folder), file = folder.appendingPathComponent("q.onnx")
        let cli = try runInception(["export", "--model", name.rawValue, "--weights", weights.path,
                                    "--output", file.path])
        try #require(cli.status == 0, "\(cli.stderr)")
        let x = try References.photos(name, 3)
        var rng = SplitMix64(5)
        let nudged = Tensor(shape: x.shape, scalars: x.scalars.map { $0 * (1 + 1e-6 * rng.uniform(-1, 1)) })
        var inputs: [String] = []
        for (stem, tensor) in [("x", x), ("nudged", nudged)] {
            let path = folder.appendingPathComponent("\(stem).npy")
            try NPY.write(shape: tensor.shape, values: tensor.scalars, to: path)
            inputs.append(path.path)
        }
        let manifest = folder.appendingPathComponent("manifest.json")
        try JSONSerialization.data(withJSONObject: [["model": file.path, "inputs": inputs, "out": folder.path,
                                                     "optimize": false]]).write(to: manifest)
        let script = repositoryRoot.appendingPathComponent("scripts/onnx_check.py").path
        let python = try run(venvPython(), ["-W", "ignore", script, manifest.path])
        try #require(python.status == 0, "onnx_check.py: \(python.stderr)")
        func ort(_ stem: String) throws -> [Float] {
            try NPY.read(contentsOf: folder.appendingPathComponent("\(stem)_embedding.npy")).values
        }
        let model = try InceptionModel(name, weights: weights, precision: .int8)
        let ours = try model(nchw: x, output: "embedding").scalars
        let fp32 = try References.model(name)(nchw: x, output: "embedding").scalars
        let theirs = try ort("x")
        Self.expectWithinPeerSpread("int8 against ONNX Runtime", distance: relativeError(ours, theirs),
                                    spread: relativeError(try ort("nudged"), theirs), slack: 1e-5,
                                    fp32: relativeError(fp32, theirs), fp32Factor: 2)
    }

    /// int8 at every kernel level: VNNI quads (AVX-512 or AVX), AVX2 pairs, AMX (its emulator, and the instructions
    /// where the CPU has them) and the Swift reference sum the same integers, so the levels with FMA (whose fp32 first
    /// convolution and linear layers round alike) agree bitwise, and the baseline (no FMA: its first convolution
    /// rounds differently) within the chaos that rounding can start (measured 2e-7).
    @Test func int8IsTheSameAtEveryKernelLevel() throws {
        let folder = try scratchDirectory("int8-levels")
        defer { try? FileManager.default.removeItem(at: folder) }
        let name = ModelName.inceptionResNetV1FaceNet
        let weights = try References.quantized(name, into: folder), input = folder.appendingPathComponent("x.npy")
        let x = try References.photos(name, 1)
        try NPY.write(shape: x.shape, values: x.scalars, to: input)
        var results: [String: [Float]] = [:]
        // AVX2 with AVX-VNNI where the CPU has it, and without (VPMADDWD).
        let runs = Kernels.supported.map { ($0.name, ["INCEPTION_ISA": $0.name, "INCEPTION_AMX": "off"]) }
            + [("avx2-pairs", ["INCEPTION_ISA": "avx2", "INCEPTION_NO_AVX_VNNI": "1", "INCEPTION_AMX": "off"]),
               ("amx-emulated", ["INCEPTION_AMX": "emulate"])]
            + (AMX.instructionsUsable ? [("amx", ["INCEPTION_AMX": ""])] : [])
        for (level, environment) in runs where level != "avx2-pairs" || results["avx2"] != nil {
            let output = folder.appendingPathComponent("\(level).npy")
            let cli = try runInception(["predict", "--weights", weights.path, "--precision", "int8", "--input",
                                        input.path, "--output", output.path], environment: environment)
            try #require(cli.status == 0, "\(level): \(cli.stderr)")
            results[level] = try NPY.read(contentsOf: output).values
        }
        let best = try #require(results[Kernels.supported[0].name])
        for level in ["avx2", "avx2-pairs", "amx-emulated", "amx"] {
            #expect(results[level].map { $0 == best } ?? true, "\(level) differs from \(Kernels.supported[0].name)")
        }
        let baseline = relativeError(try #require(results["baseline"]), best)
        print("int8 baseline against \(Kernels.supported[0].name): \(baseline)")
        #expect(baseline < 0.02)
    }

    /// What cannot run is one line: int8 from fp32 weights, bf16 at a level without it, a quantised checkpoint
    /// that is malformed.
    @Test func refusalsAreOneLine() throws {
        let folder = try scratchDirectory("int8-bad")
        defer { try? FileManager.default.removeItem(at: folder) }
        let name = ModelName.inceptionResNetV1FaceNet
        let input = folder.appendingPathComponent("x.npy"), output = folder.appendingPathComponent("y.npy")
        let x = try References.photos(name, 1)
        try NPY.write(shape: x.shape, values: x.scalars, to: input)
        func predict(_ weights: URL, _ precision: String, _ environment: [String: String] = [:]) throws -> String {
            let cli = try runInception(["predict", "--model", name.rawValue, "--weights", weights.path, "--precision",
                                        precision, "--input", input.path, "--output", output.path],
                                       environment: environment)
            #expect(cli.status == 1 && cli.stderr.split(separator: "\n").count == 1, "\(cli.stderr)")
            return cli.stderr
        }
        #expect(try predict(References.weights(name), "int8").contains("int8 needs a quantised checkpoint"))
        // serve and bench refuse a precision the level cannot run before loading anything.
        for command in [["serve", "--port", "0"], ["bench", "--runs", "1"]] {
            let cli = try runInception(command + ["--precision", "bf16"],
                                       environment: ["INCEPTION_ISA": "baseline", "INCEPTION_AMX": "off"])
            #expect(cli.status == 1 && cli.stderr.hasPrefix("error: bf16 needs")
                    && cli.stderr.split(separator: "\n").count == 1, "\(command[0]): \(cli.stderr)")
        }
        let bf16 = try predict(References.weights(name), "bf16", ["INCEPTION_ISA": "avx2", "INCEPTION_AMX": "off"])
        #expect(bf16.contains("bf16 needs"), "\(bf16)")
        let setting = try predict(References.weights(name), "bf16", ["INCEPTION_AMX": "sometimes"])
        #expect(setting.hasPrefix("error: INCEPTION_AMX=sometimes is not a setting"), "\(setting)")
        // A quantised checkpoint without one of an int8 weight's companions, and with one too many.
        let good = try SafeTensorsFile(contentsOf: try References.quantized(name, into: folder))
        let scale = try #require(good.entries.keys.first { $0.hasSuffix(".input_scale") })
        for (label, drop, add) in [("missing", scale, nil), ("extra", nil, "last_linear.input_scale")] {
            var tensors: [SafeTensorsFile.Tensor] = []
            for (key, entry) in good.entries where key != drop {
                let bytes = entry.dtype.byteSize == 1 ? Data(try good.bytes(key, dtype: entry.dtype))
                    : try good.floats(key).withUnsafeBytes { Data($0) }
                tensors.append(.init(name: key, shape: entry.shape, dtype: entry.dtype, bytes: bytes))
            }
            if let add { tensors.append(.init(name: add, shape: [1], values: [0.1])) }
            let bad = folder.appendingPathComponent("\(label).safetensors")
            try SafeTensorsFile.write(tensors, metadata: good.metadata, to: bad)
            let line = try predict(bad, "int8")
            #expect(line.contains("quantised checkpoint is malformed"), "\(label): \(line)")
        }
    }

    /// The quantised layout's own checks, each one line naming the tensor: a companion of the wrong dtype or shape,
    /// one without its weight, an I8 tensor that is not a convolution weight, a scale that is not positive, −128.
    @Test func malformedQuantisedTensorsAreNamed() throws {
        func file(_ change: (inout [String: SafeTensorsFile.Tensor]) -> Void) throws -> String? {
            var tensors: [String: SafeTensorsFile.Tensor] = [
                "a.weight": .init(name: "a.weight", shape: [2, 1, 1, 1], dtype: .I8, bytes: Data([3, 0xFD])),
                "a.weight_scale": .init(name: "a.weight_scale", shape: [2], values: [0.5, 0.25]),
                "a.input_scale": .init(name: "a.input_scale", shape: [1], values: [0.1]),
                "a.input_zero_point": .init(name: "a.input_zero_point", shape: [1], dtype: .U8, bytes: Data([7])),
            ]
            change(&tensors)
            let data = try SafeTensorsFile.serialized(Array(tensors.values), metadata: ["quantization": "int8"])
            do {
                let checkpoint = try QuantizedCheckpoint(try SafeTensorsFile(data: data))
                for key in checkpoint.shapes.keys { _ = try checkpoint.floats(key) }
                return nil
            } catch let error as QuantizedCheckpointError {
                return error.description
            }
        }
        #expect(try file { _ in } == nil)
        let good = try QuantizedCheckpoint(try SafeTensorsFile(data: try SafeTensorsFile.serialized([
            .init(name: "a.weight", shape: [2, 1, 1, 1], dtype: .I8, bytes: Data([3, 0xFD])),
            .init(name: "a.weight_scale", shape: [2], values: [0.5, 0.25]),
            .init(name: "a.input_scale", shape: [1], values: [0.1]),
            .init(name: "a.input_zero_point", shape: [1], dtype: .U8, bytes: Data([7])),
        ], metadata: ["quantization": "int8"])))
        #expect(try good.floats("a.weight") == [1.5, -0.75] && good.shapes.keys.sorted() == ["a.weight"])
        let cases: [(String, (inout [String: SafeTensorsFile.Tensor]) -> Void)] = [
            ("a.input_zero_point", { $0["a.input_zero_point"]!.dtype = .I8 }),
            ("a.weight", { $0["a.weight_scale"] = nil }),
            ("a.weight_scale", { $0["a.weight_scale"] = .init(name: "a.weight_scale", shape: [3], values: [1, 1, 1]) }),
            ("b.input_scale", { $0["b.input_scale"] = .init(name: "b.input_scale", shape: [1], values: [1]) }),
            ("c.bias", { $0["c.bias"] = .init(name: "c.bias", shape: [1], dtype: .I8, bytes: Data([1])) }),
            ("a.weight", { $0["a.input_scale"] = .init(name: "a.input_scale", shape: [1], values: [0]) }),
            ("a.weight", { $0["a.weight"]!.bytes = Data([0x80, 1]) }),
        ]
        for (key, change) in cases {
            let line = try file(change)
            #expect(line?.contains("'\(key)'") == true && line?.contains("\n") == false,
                    "\(key): \(line ?? "accepted")")
        }
    }
}
