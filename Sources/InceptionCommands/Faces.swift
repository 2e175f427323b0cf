import ArgumentParser
import Foundation
import Inception
import InceptionIO

struct Faces: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find faces in photos (MTCNN, exact to facenet-pytorch), crop them, enroll people and find them.",
        subcommands: [FacesDetect.self, FacesCrop.self, FacesEnroll.self, FacesFind.self, FacesBench.self])
}

/// What the `faces` commands share: each photo decoded and searched in turn, a photo that cannot be read or holds
/// no face reported on standard error by name, the count of such photos kept for the exit status.
struct PhotoSearch {
    let detector: FaceDetector
    let threads: Int
    private(set) var failed = 0

    init(_ detector: FaceDetector, threads: Int) { (self.detector, self.threads) = (detector, threads) }

    /// The photo and its faces, largest first; nil (reported) when it cannot be read. `reportNone`: a photo without
    /// a face is reported too, and counts as failed.
    mutating func faces(in path: String, reportNone: Bool = true) -> (image: RGBImage, faces: [Face])? {
        guard let image = photo(path), let faces = faces(in: image, of: path, reportNone: reportNone) else {
            return nil
        }
        return (image, faces)
    }

    /// The photo decoded, or nil (reported, failed).
    mutating func photo(_ path: String) -> RGBImage? {
        do { return try decode(path) } catch {
            failed += 1
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            return nil
        }
    }

    /// The faces of a decoded photo, largest first, or nil (reported, failed) when the search fails.
    mutating func faces(in image: RGBImage, of path: String, reportNone: Bool = true) -> [Face]? {
        do {
            let faces = try detector.detect(image, threads: threads)
            if faces.isEmpty && reportNone {
                failed += 1
                FileHandle.standardError.write(Data("error: \(path): no face found\n".utf8))
            }
            return faces
        } catch {
            failed += 1
            FileHandle.standardError.write(Data("error: \(path): \(error)\n".utf8))
            return nil
        }
    }

    /// Exit status 1 when any photo failed, after everything else was done.
    func finish() throws { if failed > 0 { throw ExitCode(1) } }
}


/// A face's box as the commands print it in text.
func faceDescription(_ face: Face) -> String {
    String(format: "(%.1f, %.1f)–(%.1f, %.1f), probability %.4f", face.box.x1, face.box.y1, face.box.x2, face.box.y2,
           face.probability)
}

struct FacesDetect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detect",
        abstract: "Each photo's faces: box, probability and five landmarks, largest first.",
        discussion: """
            MTCNN as facenet-pytorch 2.6's MTCNN.detect(img, landmarks=True) computes it (docs/faces.md). A photo \
            without a face, or one that cannot be read, is reported by name; the exit status is then 1.
            """)

    @OptionGroup var detection: FaceDetectionOption

    @Option(help: "Draw the boxes and landmarks on the photo: a PNG, or a folder for several photos.")
    var draw: String?

    @OptionGroup var input: FacePhotosOption

    var json: Bool { input.json }
    var threads: ThreadsOption { input.threads }
    var photos: [String] { input.photos }

    func validate() throws {
        if let draw { try FlagRule.output(draw, notAmong: photos, json: json, flag: "--draw") }
    }

    func run() throws {
        try reportingErrors {
            var search = PhotoSearch(try detection.load(), threads: threads.threads)
            let names = Explain.overlayNames(photos)
            var records: [[String: Any]] = []
            for path in photos {
                guard let (image, faces) = search.faces(in: path) else {
                    records.append(["photo": path, "error": "unreadable"])
                    continue
                }
                var record: [String: Any] = ["photo": path, "width": image.width, "height": image.height,
                                             "faces": faces.map(\.record)]
                if let draw {
                    let file = photos.count == 1 ? draw
                        : URL(fileURLWithPath: draw).appendingPathComponent("\(names[path]!).png").path
                    if photos.count > 1 { try FileManager.default.createDirectory(atPath: draw,
                                                                                  withIntermediateDirectories: true) }
                    try FileOutput.write(try image.drawing(faces).pngData(), to: file)
                    record["drawing"] = file
                }
                records.append(record)
                if !json {
                    print("\(path): \(faces.count) face\(faces.count == 1 ? "" : "s")")
                    for face in faces { print("  " + faceDescription(face)) }
                }
            }
            if json { try printJSON(["photos": records]) }
            try search.finish()
        }
    }
}

struct FacesCrop: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crop",
        abstract: "Write each face's aligned crop as PNG: what the face model embeds.",
        discussion: """
            facenet-pytorch's MTCNN(image_size, margin)(img) crop of every face, before its standardisation: the \
            box widened by --margin, resized with Pillow's bilinear filter. Files are OUTPUT/PHOTO.N.png, N from 1 \
            for the largest face.
            """)

    @OptionGroup var detection: FaceDetectionOption

    @Option(help: "The folder the crops are written to.")
    var output: String

    @Option(help: "The crops' side in pixels.")
    var size = 160

    @OptionGroup var input: FacePhotosOption

    var json: Bool { input.json }
    var threads: ThreadsOption { input.threads }
    var photos: [String] { input.photos }

    func validate() throws {
        try FlagRule.count(size, "--size", in: 16...1024)
        guard detection.margin < size else { throw CLIError("--margin must be smaller than --size") }
        try FlagRule.output(output, notAmong: photos, json: json)
    }

    func run() throws {
        try reportingErrors {
            var search = PhotoSearch(try detection.load(), threads: threads.threads)
            try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
            let names = Explain.overlayNames(photos)
            var records: [[String: Any]] = []
            for path in photos {
                guard let (image, faces) = search.faces(in: path) else { continue }
                for (k, face) in faces.enumerated() {
                    guard let crop = face.alignedCrop(of: image, size: size, margin: detection.margin) else { continue }
                    let file = URL(fileURLWithPath: output).appendingPathComponent("\(names[path]!).\(k + 1).png").path
                    try FileOutput.write(try crop.pngData(), to: file)
                    var record = face.record
                    (record["photo"], record["crop"]) = (path, file)
                    records.append(record)
                    if !json { print("\(path): \(faceDescription(face)) → \(file)") }
                }
            }
            if json { try printJSON(["crops": records]) }
            try search.finish()
        }
    }
}
