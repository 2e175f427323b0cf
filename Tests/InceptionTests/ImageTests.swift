import Foundation
import Inception
import InceptionIO
import InceptionReferences
import InceptionTestSupport
import Testing

/// Decoding against Pillow's `convert("RGB")`, and each model's preprocessing against timm's eval transform, on
/// real photos in every format (written by scripts/make_references.py, not in the repository).
struct ImageConformance {
    /// PNGs decode exactly as Pillow; JPEGs too, up to libjpeg-turbo version differences (at most one level, rare).
    @Test(arguments: Photos.images)
    func decodesAsPillow(_ name: String) throws {
        let image = try RGBImage(contentsOf: try Photos.imageURL(name))
        let expected = try Photos.reference("\(Photos.stem(name))_rgb.npy")
        #expect([image.height, image.width, 3] == expected.shape)
        let differences = zip(image.pixels, expected.scalars).map { abs(Float($0) - $1) }
        if name.hasSuffix(".png") {
            #expect(differences.allSatisfy { $0 == 0 }, "max difference \(differences.max() ?? 0)")
        } else {
            let off = differences.filter { $0 > 0 }.count
            #expect(differences.allSatisfy { $0 <= 1 } && Double(off) / Double(differences.count) < 0.001,
                    "\(off) values differ, max \(differences.max() ?? 0)")
        }
    }

    /// `inception preprocess` vs timm's eval transform (and, for the face model, torchvision's resize and crop then
    /// facenet-pytorch's `fixed_image_standardization`): ≥ 99% of values within one 8-bit step (2/255 in [−1, 1];
    /// 1/128 for the face model) and none beyond three.
    @Test(arguments: Photos.images.flatMap { image in
        [ModelName.inceptionV4, .inceptionResNetV2, .inceptionResNetV1FaceNet].map { "\($0) \(image)" }
    })
    func preprocessCommandMatchesTimm(_ label: String) throws {
        let parts = label.split(separator: " ").map(String.init)
        let (model, name) = (parts[0], parts[1])
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pre-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("x.npy")
        let result = try runInception(["preprocess", "--model", model, try Photos.imageURL(name).path, "--output",
                                       out.path])
        #expect(result.status == 0, "\(result.stderr)")
        let (shape, ours) = try NPY.read(contentsOf: out)
        let expected = try Photos.reference("\(Photos.stem(name))_\(model).npy")
        #expect(shape == expected.shape)
        let step: Float = model == ModelName.inceptionResNetV1FaceNet.rawValue ? 1 / 128 : 2 / 255
        let differences = zip(ours, expected.scalars).map { abs($0 - $1) }
        let within = differences.filter { $0 <= step * 1.001 }.count
        #expect(Double(within) / Double(differences.count) >= 0.99,
                "\(differences.count - within) values beyond one step")
        #expect(differences.allSatisfy { $0 <= 3 * step * 1.001 },
                "max difference \((differences.max() ?? 0) / step) steps")
    }
}

/// Decoder failures are typed errors, never crashes, and huge images are refused before allocation.
struct ImageErrorTests {
    @Test func emptyTruncatedAndForeignDataAreClearErrors() throws {
        #expect(throws: ImageError.empty) { try RGBImage(decoding: Data()) }
        #expect(throws: ImageError.notAnImage) { try RGBImage(decoding: Data("GIF89a not supported".utf8)) }
        let jpeg = try Data(contentsOf: try Photos.imageURL("chelsea_baseline.jpg"))
        #expect { try RGBImage(decoding: jpeg.prefix(jpeg.count / 2)) } throws: { error in
            "\(error)" == "corrupt JPEG: Premature end of JPEG file"
        }
        let png = try Data(contentsOf: try Photos.imageURL("chelsea_rgb.png"))
        #expect { try RGBImage(decoding: png.prefix(png.count / 2)) } throws: { error in
            "\(error)".hasPrefix("corrupt PNG: ")
        }
        #expect { try RGBImage(decoding: png.prefix(20)) } throws: { error in "\(error)".hasPrefix("corrupt PNG: ") }
    }

    @Test func decompressionBombIsRefusedBeforeAllocating() throws {
        // A valid PNG header declaring 100000 × 100000 pixels (10 G), and no data.
        var header = Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52])
        header.append(contentsOf: [0x00, 0x01, 0x86, 0xA0, 0x00, 0x01, 0x86, 0xA0, 8, 2, 0, 0, 0])
        var crc = CRC32()
        crc.update(header[12...])
        header.append(contentsOf: withUnsafeBytes(of: crc.final.bigEndian, Array.init))
        var idat = CRC32()
        idat.update([0x49, 0x44, 0x41, 0x54] as [UInt8])  // an empty IDAT, where libpng stops reading the header
        header.append(contentsOf: [0, 0, 0, 0, 0x49, 0x44, 0x41, 0x54])
        header.append(contentsOf: withUnsafeBytes(of: idat.final.bigEndian, Array.init))
        #expect(throws: ImageError.tooLarge(width: 100_000, height: 100_000,
                                            maximumPixels: RGBImage.defaultMaximumPixels)) {
            try RGBImage(decoding: header)
        }
        // The limit applies to JPEG too, and is adjustable.
        let jpeg = try Data(contentsOf: try Photos.imageURL("chelsea_baseline.jpg"))
        #expect(throws: ImageError.tooLarge(width: 451, height: 300, maximumPixels: 1000)) {
            try RGBImage(decoding: jpeg, maximumPixels: 1000)
        }
    }

    @Test func classifyReportsABadImageInOneLine() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("bad-\(UUID()).jpg")
        try Data("not really a jpeg".utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let result = try runInception(["classify", "--weights", try References.weights(.inceptionV4).path, file.path])
        #expect(result.status == 1)
        #expect(result.stderr == "error: \(file.path): not a JPEG or PNG image\n")
    }
}

struct CRC32 {
    var value: UInt32 = 0xFFFF_FFFF
    mutating func update<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        for b in bytes {
            value ^= UInt32(b)
            for _ in 0..<8 { value = value & 1 == 1 ? (value >> 1) ^ 0xEDB8_8320 : value >> 1 }
        }
    }
    var final: UInt32 { value ^ 0xFFFF_FFFF }
}
