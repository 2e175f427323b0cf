import Foundation
import Inception
import InceptionIO
import InceptionReferences
import InceptionTestSupport
import Testing

/// `inception explain` as a user runs it: several photos and classes at once into a folder, each overlay a PNG of its
/// photo's aspect and the library's bytes; an unreadable photo reported and the others still explained; refusals in
/// one line.
@Suite struct ExplainCommandTests {
    @Test func severalPhotosAndClassesGoIntoTheFolder() throws {
        let weights = try References.weights(.inceptionV4)
        let scratch = try scratchDirectory("explain-command")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let photos = try ["chelsea_thin_wide.png", "rocket.jpg"].map { try Photos.imageURL($0) }
        let missing = scratch.appendingPathComponent("missing.jpg").path
        let folder = scratch.appendingPathComponent("overlays")
        let result = try runInception(["explain", "--weights", weights.path, "--top", "2", "--method", "xgradcam",
                                       "--output", folder.path, photos[0].path, missing, photos[1].path])
        #expect(result.status == 1 && result.stderr.contains("missing.jpg"), "\(result.stderr)")
        let model = try InceptionModel(.inceptionV4, weights: weights)
        for photo in photos {
            let image = try RGBImage(contentsOf: photo)
            let top = try model.classify([image], top: 2)[0]
            let maps = try model.explain([image, image], targets: top.map { .classIndex($0.index) }, method: .xGradCAM)
            for (prediction, map) in zip(top, maps) {
                let stem = photo.deletingPathExtension().lastPathComponent
                let file = folder.appendingPathComponent("\(stem).\(prediction.index).png")
                let written = try Data(contentsOf: file)
                #expect(written == (try map.overlayPNG(on: image, model: model)), "\(file.lastPathComponent)")
                let overlay = try RGBImage(decoding: written)
                #expect(overlay.width == image.width && overlay.height == image.height)
                #expect(result.stdout.contains("\(photo.path): \(map.caption(model: model)) → \(file.path)"))
            }
        }
    }

    @Test func refusalsAreOneLine() throws {
        let weights = try References.weights(.inceptionV4).path
        let photo = try Photos.imageURL("rocket.jpg").path
        let cases: [([String], String)] = [
            (["explain", "--weights", weights, photo], "Error: give --output for the overlays, or --json, or both"),
            (["explain", "--weights", weights, "--class", "3", "--top", "2", "--json", photo],
             "Error: --class and --top exclude each other"),
            (["explain", "--weights", weights, "--class", "1000", "--json", photo],
             "error: --class 1000 is out of range: the model has 1000 classes"),
            (["explain", "--weights", weights, "--layer", "nowhere", "--json", photo],
             "error: inception_v4 has no layer 'nowhere'; its layers are conv2d_1a, conv2d_2a"),
            (["explain", "--weights", weights, "--output", photo, photo],
             "Error: --output \(photo): it is also an input of this command"),
        ]
        for (arguments, line) in cases {
            let result = try runInception(arguments)
            #expect(result.status != 0 && result.stderr.hasPrefix(line), "\(arguments): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        }
    }
}
