import Foundation
import Inception
import InceptionIO
import InceptionReferences
import InceptionTestSupport
import Testing

/// Bad input outside the server (issue #16): every command answers one line naming the problem, never a signal and
/// never a Foundation error domain.
@Suite struct HostileInputTests {
    static func scratch() throws -> URL { try scratchDirectory("hostile") }

    /// A directory, a FIFO and a character device where a file is expected: one line saying what the path is.
    @Test func pathsThatAreNotFilesAreNamed() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let fifo = dir.appendingPathComponent("pipe")
        #expect(mkfifo(fifo.path, 0o600) == 0)
        let weights = try References.weights(.inceptionResNetV1FaceNet).path
        let photo = try Photos.imageURL("rocket.jpg").path
        let face = ["--model", "inception_resnet_v1_facenet"]
        let cases: [([String], String)] = [
            (["classify"] + face + ["--weights", weights, dir.path],
             "cannot read image \(dir.path): is a directory, not a file"),
            (["classify"] + face + ["--weights", weights, fifo.path],
             "cannot read image \(fifo.path): is a FIFO (named pipe), not a regular file"),
            (["classify"] + face + ["--weights", weights, "/dev/zero"],
             "cannot read image /dev/zero: is a character device, not a regular file"),
            (["classify"] + face + ["--weights", dir.path, photo],
             "cannot read safetensors file \(dir.path): is a directory, not a file"),
            (["classify"] + face + ["--weights", "/dev/zero", photo],
             "cannot read safetensors file /dev/zero: is a character device, not a regular file"),
            (["predict"] + face + ["--weights", weights, "--input", fifo.path,
                                   "--output", dir.appendingPathComponent("o.npy").path],
             "cannot read npy file \(fifo.path): is a FIFO (named pipe), not a regular file"),
        ]
        for (arguments, message) in cases {
            let result = try runInception(arguments)
            #expect(result.status == 1 && result.stderr == "error: \(message)\n", "\(arguments): \(result.stderr)")
            #expect(!result.stderr.contains("Domain"))
        }
    }

    /// A negative BatchNorm variance, and weights that overflow once folded, are refused naming the key.
    @Test func unusableWeightsAreRefusedNamingTheKey() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = try SafeTensorsFile(contentsOf: try References.weights(.inceptionResNetV1FaceNet))
        func variant(_ changes: [String: (inout [Float]) -> Void]) throws -> URL {
            let tensors = try file.entries.keys.sorted().filter { file.entries[$0]!.dtype == .F32 }.map { name in
                var values = try file.floats(name)
                changes[name]?(&values)
                return (name: name, shape: file.entries[name]!.shape, values: values)
            }
            let url = dir.appendingPathComponent("\(UUID()).safetensors")
            try SafeTensorsFile.write(tensors, to: url)
            return url
        }
        let negative = try variant(["conv2d_1a.bn.running_var": { $0[3] = -0.5 }])
        #expect { try InceptionModel(.inceptionResNetV1FaceNet, weights: negative) } throws: { error in
            "\(error)" == "weights are corrupt: tensor 'conv2d_1a.bn.running_var' is a BatchNorm variance "
                + "but holds -0.5 at channel 3"
        }
        // 3e38 times the BatchNorm scale γ / √(1e-6 + ε) ≈ 0.3 / 0.03 passes Float's largest value.
        let huge = try variant(["conv2d_1a.conv.weight": { $0[0] = 3e38 },
                                "conv2d_1a.bn.running_var": { $0[0] = 1e-6 }])
        #expect { try InceptionModel(.inceptionResNetV1FaceNet, weights: huge) } throws: { error in
            "\(error)" == "weights are out of range: tensor 'conv2d_1a.conv.weight' overflows Float "
                + "once its BatchNorm is folded in"
        }
    }

    /// An input with NaN or infinities is refused (one line, exit 1) unless --allow-nonfinite.
    @Test func nonFiniteInputsAreRefused() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        var values = [Float](repeating: 0.1, count: 3 * 160 * 160)
        values[7] = .nan
        values[9] = .infinity
        let input = dir.appendingPathComponent("x.npy"), output = dir.appendingPathComponent("y.npy")
        try NPY.write(shape: [1, 3, 160, 160], values: values, to: input)
        let arguments = ["predict", "--model", "inception_resnet_v1_facenet", "--weights",
                         try References.weights(.inceptionResNetV1FaceNet).path, "--input", input.path,
                         "--output", output.path]
        let refused = try runInception(arguments)
        #expect(refused.status == 1
                && refused.stderr == "error: the input holds 2 NaN or infinite values (the first at flat index 7)\n")
        let allowed = try runInception(arguments + ["--allow-nonfinite"])
        #expect(allowed.status == 0, "\(allowed.stderr)")
        #expect(try NPY.read(contentsOf: output).values.allSatisfy(\.isNaN))
    }

    /// JSON output spells a non-finite number as null instead of failing.
    @Test func jsonNeverFailsOnNonFiniteNumbers() throws {
        let data = try JSON.data(["a": [Float.nan, 1.5], "b": Double.infinity, "c": ["d": -Float.infinity]])
        #expect(String(decoding: data, as: UTF8.self) == #"{"a":[null,1.5],"b":null,"c":{"d":null}}"#)
    }

    /// Decoding stops at its time limit (a progressive JPEG whose smallest scan is repeated a thousand times).
    @Test func decodingStopsAtItsTimeLimit() throws {
        let jpeg = try References.attack("scans_1000.jpg")
        #expect(throws: ImageError.tooSlow(format: "JPEG", limit: .milliseconds(20))) {
            try RGBImage(decoding: jpeg, timeLimit: .milliseconds(20))
        }
        let png = try References.attack("zeros_13000.png")
        #expect(throws: ImageError.tooSlow(format: "PNG", limit: .milliseconds(20))) {
            try RGBImage(decoding: png, timeLimit: .milliseconds(20))
        }
        // Without a limit both decode.
        #expect(try RGBImage(decoding: jpeg).width == 4000)
    }

    /// Resizing only the kept region equals resizing everything, then cropping — for every kind of scale and filter.
    @Test(arguments: [(451, 300, 341, 226), (300, 451, 220, 331), (40, 900, 341, 7672), (300, 2, 51150, 341),
                      (5, 5, 17, 3)])
    func regionResizeIsTheCropOfTheFullResize(_ w: Int, _ h: Int, _ newW: Int, _ newH: Int) throws {
        let photo = try RGBImage(contentsOf: try Photos.imageURL("chelsea_rgb.png"))
        let source = photo.resized(width: w, height: h, filter: .bicubic)  // real content at the size under test
        for filter in [ResampleFilter.bicubic, .bilinear] {
            let full = source.resized(width: newW, height: newH, filter: filter)
            for region in [RGBImage.Region(left: 0, top: 0, width: newW, height: newH),
                           .init(left: newW / 3, top: newH / 3, width: max(1, newW / 3), height: max(1, newH / 3)),
                           .init(left: newW - 1, top: newH - 1, width: 1, height: 1)] {
                let expected = full.cropped(left: region.left, top: region.top, width: region.width,
                                            height: region.height)
                #expect(source.resized(width: newW, height: newH, filter: filter, keeping: region) == expected,
                        "\(region)")
            }
        }
    }

    /// The command line on the thin images that once asked for 35 GB: an answer within seconds.
    @Test func thinImagesFromTheCommandLine() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let start = ContinuousClock.now
        for name in ["thin_1x100000.png", "thin_100000x1.png"] {
            let url = dir.appendingPathComponent(name)
            try References.attack(name).write(to: url)
            let result = try runInception(["preprocess", "--model", "inception_v4", url.path,
                                           "--output", dir.appendingPathComponent("x.npy").path])
            #expect(result.status == 0, "\(result.stderr)")
            // One colour in, that colour's normalised value out, everywhere: (c / 255 − 0.5) / 0.5.
            let values = try NPY.read(contentsOf: dir.appendingPathComponent("x.npy")).values
            let expected: [Float] = [10, 200, 30].map { (Float($0) / 255 - 0.5) / 0.5 }
            let plane = 299 * 299
            #expect((0..<3).allSatisfy { c in
                values[(c * plane)..<((c + 1) * plane)].allSatisfy { $0 == expected[c] }
            })
        }
        #expect(ContinuousClock.now - start < .seconds(60))
    }
}
