import ArgumentParser
import Foundation
import Inception
import InceptionIO

/// The photos of a gallery argument, each with its person: a folder's sub-folders are people (their photos inside);
/// a photo directly in a folder, or given by itself, belongs to the person its name says ("alice_2.jpg": alice).
func galleryPhotos(_ arguments: [String]) throws -> [(path: String, person: String)] {
    let manager = FileManager.default
    func isPhoto(_ name: String) -> Bool {
        ["jpg", "jpeg", "png"].contains((name as NSString).pathExtension.lowercased())
    }
    func person(fromName name: String) -> String {
        let stem = (name as NSString).deletingPathExtension
        let trimmed = stem.replacingOccurrences(of: #"[ _\-.]*\d+$"#, with: "", options: .regularExpression)
        return trimmed.isEmpty ? stem : trimmed
    }
    var photos: [(path: String, person: String)] = []
    for argument in arguments {
        var isFolder: ObjCBool = false
        guard manager.fileExists(atPath: argument, isDirectory: &isFolder) else {
            throw CLIError("cannot read \(argument): no such file or folder")
        }
        guard isFolder.boolValue else {
            photos.append((argument, person(fromName: (argument as NSString).lastPathComponent)))
            continue
        }
        for name in try manager.contentsOfDirectory(atPath: argument).sorted() where !name.hasPrefix(".") {
            let path = (argument as NSString).appendingPathComponent(name)
            var isSubfolder: ObjCBool = false
            _ = manager.fileExists(atPath: path, isDirectory: &isSubfolder)
            if isSubfolder.boolValue {
                for inner in try manager.contentsOfDirectory(atPath: path).sorted() where isPhoto(inner) {
                    photos.append(((path as NSString).appendingPathComponent(inner), name))
                }
            } else if isPhoto(name) {
                photos.append((path, person(fromName: name)))
            }
        }
    }
    return photos
}

struct FacesEnroll: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enroll",
        abstract: "Store each photo's face, embedded, in an SQLite gallery: one folder per person, or photos named "
            + "by person.",
        discussion: """
            Each photo's largest face is embedded with the face model (its aligned crop, as `embed` does) and stored \
            with its box and photo. Enrolling again skips photos stored with the same size and modification time, \
            and replaces those that changed. A photo without a face is reported; the exit status is then 1.
            """)

    @OptionGroup var weights: WeightsOption

    @OptionGroup var precision: PrecisionOption

    @OptionGroup var detection: FaceDetectionOption

    @Option(help: "The gallery: an SQLite file, made if it does not exist.")
    var db: String

    @Flag(help: "Print JSON.")
    var json = false

    @OptionGroup var threads: ThreadsOption

    @Argument(help: "Folders of people (one sub-folder each) or photos named by person.")
    var gallery: [String]

    func validate() throws {
        guard !gallery.isEmpty else { throw CLIError("give a folder of people, or photos") }
        try FlagRule.output(db, notAmong: gallery, flag: "--db")
    }

    func run() throws {
        try reportingErrors {
            let photos = try galleryPhotos(gallery)
            let net = try weights.load(precision, fallback: .inceptionResNetV1FaceNet)
            var search = PhotoSearch(try detection.load(), threads: threads.threads)
            let store = try FaceGallery(path: db, model: net.name.rawValue,
                                        dimension: net.width(of: net.embeddingOutput)!, create: true)
            var enrolled: [[String: Any]] = [], skipped = 0
            for (path, person) in photos {
                let attributes = try? FileManager.default.attributesOfItem(atPath: path)
                let size = (attributes?[.size] as? NSNumber)?.intValue ?? -1
                let modified = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
                if try store.isStored(path: path, size: size, modified: modified) {
                    skipped += 1
                    continue
                }
                guard let (image, faces) = search.faces(in: path), let face = faces.first else { continue }
                let embedding = try net.embed(faces: [face], in: image, margin: detection.margin,
                                              threads: threads.threads).scalars
                try store.store(path: path, person: person, size: size, modified: modified,
                                faces: [(face, embedding)])
                var record = face.record
                (record["photo"], record["person"]) = (path, person)
                enrolled.append(record)
                if !json { print("\(person): \(path) \(faceDescription(face))") }
            }
            let (faces, people) = try store.counts()
            if json {
                try printJSON(["db": db, "enrolled": enrolled, "unchanged": skipped, "faces": faces, "people": people])
            } else {
                print("enrolled \(enrolled.count) photos (\(skipped) unchanged, skipped); \(db) holds \(faces) faces "
                      + "of \(people) people")
            }
            try search.finish()
        }
    }
}

struct FacesFind: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "find",
        abstract: "Name the people of a gallery closest to every face in the photos, with their distances.",
        discussion: """
            Every face of each photo is embedded and compared with every face in the gallery (exactly: one matrix \
            product); each person is as close as their closest face. Distances are `compare`'s: the squared \
            distance of L2-normalised embeddings, 0 to 4; below --threshold a person is called the same.
            """)

    @OptionGroup var weights: WeightsOption

    @OptionGroup var precision: PrecisionOption

    @OptionGroup var detection: FaceDetectionOption

    @Option(help: "The gallery `inception faces enroll` made.")
    var db: String

    @Option(help: "How many people to name per face.")
    var top = 5

    @Option(help: "The same person below this distance (default as `inception compare`'s).")
    var threshold = 1.1

    @OptionGroup var input: FacePhotosOption

    var json: Bool { input.json }
    var threads: ThreadsOption { input.threads }
    var photos: [String] { input.photos }

    func validate() throws {
        try FlagRule.count(top, "--top", in: 1...1000)
        guard threshold.isFinite, threshold >= 0 else { throw CLIError("--threshold must be a distance of 0 or more") }
    }

    func run() throws {
        try reportingErrors {
            guard FileManager.default.fileExists(atPath: db) else {
                throw CLIError("no gallery at \(db): make it with `inception faces enroll FOLDER --db \(db)`")
            }
            let net = try weights.load(precision, fallback: .inceptionResNetV1FaceNet)
            var search = PhotoSearch(try detection.load(), threads: threads.threads)
            let gallery = try FaceGallery(path: db, model: net.name.rawValue,
                                          dimension: net.width(of: net.embeddingOutput)!, create: false)
            var records: [[String: Any]] = []
            for path in photos {
                guard let (image, faces) = search.faces(in: path), !faces.isEmpty else { continue }
                let rows = try net.embed(faces: faces, in: image, margin: detection.margin, threads: threads.threads)
                let width = rows.shape[1]
                let probes = faces.indices.map { Array(rows.scalars[($0 * width)..<(($0 + 1) * width)]) }
                let matches = try gallery.search(probes, top: top, threads: threads.threads)
                records.append(["photo": path, "faces": zip(faces, matches).map { face, found in
                    var record = face.record
                    record["matches"] = found.map(matchRecord)
                    return record
                }])
                if !json { printMatches(path, faces, matches) }
            }
            if json { try printJSON(["db": db, "threshold": threshold, "photos": records]) }
            try search.finish()
        }
    }

    func matchRecord(_ match: FaceGallery.Match) -> [String: Any] {
        ["person": match.person, "distance": match.distance, "same": match.distance < threshold,
         "photo": match.entry.photo,
         "box": [match.entry.box.x1, match.entry.box.y1, match.entry.box.x2, match.entry.box.y2].map(Double.init)]
    }

    func printMatches(_ path: String, _ faces: [Face], _ matches: [[FaceGallery.Match]]) {
        for (face, found) in zip(faces, matches) {
            let names = found.map { String(format: "%@ %.4f%@", $0.person, $0.distance,
                                           $0.distance < threshold ? " (same)" : "") }
            print("\(path) \(faceDescription(face)): "
                  + (names.isEmpty ? "nobody enrolled" : names.joined(separator: ", ")))
        }
    }
}
