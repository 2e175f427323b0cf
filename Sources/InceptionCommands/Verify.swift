import ArgumentParser
import Foundation
import Inception
import InceptionIO

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Face verification on pairs (LFW's protocol): 10-fold accuracy, VAL@FAR=1e-3, ROC AUC.",
        discussion: """
            Reads LFW's pairs.txt (the 10-fold file or the simple one: 'name n m' for the same person, 'name n \
            other m' for two) over DIR/name/name_000n.jpg; embeds each image once, in batches; scores the pairs \
            by the squared distance of L2-normalised embeddings, as facenet's evaluate does (docs/evaluation.md). \
            The network is the face model unless --model or the weights file names another.
            """)

    @OptionGroup var weights: WeightsOption

    @OptionGroup var precision: PrecisionOption

    @Option(help: "The pairs file (LFW's pairs.txt format).")
    var pairs: String

    @Option(help: "The image folder: one sub-folder per person.")
    var images: String

    @Option(help: "Also draw the ROC curve as SVG here.")
    var roc: String?

    @Option(help: "Images per forward pass.")
    var batch: Int = 8

    @Flag(help: "Print JSON: the figures, each fold's, and each pair's distance.")
    var json = false

    @OptionGroup var faces: FacesInPhotosOption

    @OptionGroup var threads: ThreadsOption

    func validate() throws {
        try FlagRule.batch(batch)
        if let roc {
            try FlagRule.output(roc, notAmong: [pairs] + [weights.weights].compactMap { $0 }, json: json, flag: "--roc")
        }
    }

    func run() throws {
        try reportingErrors {
            let list = try Self.readPairs(pairs, images: images)
            let paths = Array(Set(list.flatMap { [$0.first, $0.second] })).sorted()
            // Before any work: --roc is none of the images, and its folder takes a file.
            let rocFile = try roc.map { roc in
                try FlagRule.output(roc, notAmong: paths, flag: "--roc")
                return try OutputFile(roc)
            }
            let net = try weights.load(precision, fallback: .inceptionResNetV1FaceNet)
            let detection = try faces.detection(for: net, wholeWhenNone: true)
            let (embeddings, faces) = try FaceEmbedder.embed(paths, net, batch: batch, threads: threads.threads,
                                                         detection: detection, progress: paths.count > 4 * batch)
            let distances = list.map { FaceDistance.distance(embeddings[$0.first]!, embeddings[$0.second]!) }
            let result = try Verification(distances: distances, same: list.map(\.same))
            if let rocFile {
                try rocFile.write(Data(rocSVG(result, title: net.name.rawValue).utf8))
                try rocFile.commit()
            }
            if json {
                var record = report(result, list, distances, model: net.name.rawValue)
                // With detection, the face each photo gave (null: none was found, the whole photo was embedded).
                if detection != nil { record["faces"] = faces.mapValues { $0.map(\.record) ?? NSNull() as Any } }
                return try printJSON(record)
            }
            print(String(format: "%@ on %d pairs: accuracy %.2f%% ± %.2f%%, VAL %.2f%% ± %.2f%% @ FAR %.4f%%, "
                         + "AUC %.4f", net.name.rawValue, list.count, 100 * result.accuracy,
                         100 * result.accuracyStd, 100 * result.val, 100 * result.valStd, 100 * result.far,
                         result.auc))
        }
    }

    /// The pairs file read in one pass, a megabyte at a time (at most 64 MB): memory follows the pairs.
    static func readPairs(_ path: String, images: String) throws -> [FacePair] {
        let url = URL(fileURLWithPath: path)
        do {
            guard try FileInput.regularFileSize(url) <= 64 << 20 else {
                throw CLIError("cannot read pairs file \(path): larger than 64 MB")
            }
        } catch let problem as FileInput.Problem {
            throw CLIError("cannot read pairs file \(path): \(problem)")
        }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw CLIError("cannot read pairs file \(path): \(FileOutput.reason(errno))")
        }
        defer { try? handle.close() }
        var (reader, total) = (PairsFile.Reader(images: images), 0)
        while total <= 64 << 20 {
            let chunk: Data?
            do { chunk = try handle.read(upToCount: 1 << 20) } catch {
                throw CLIError("cannot read pairs file \(path): \(FileOutput.reason(errno))")
            }
            guard let chunk, !chunk.isEmpty else { return try reader.finish() }
            total += chunk.count
            try reader.feed(chunk)
        }
        throw CLIError("cannot read pairs file \(path): larger than 64 MB")
    }

    func report(_ result: Verification, _ list: [FacePair], _ distances: [Double], model: String) -> [String: Any] {
        ["model": model, "pairs": list.count, "accuracy": result.accuracy, "accuracy_std": result.accuracyStd,
         "val": result.val, "val_std": result.valStd, "far": result.far, "auc": result.auc,
         "roc": result.roc.map { [$0.fpr, $0.tpr] },
         "folds": (0..<result.accuracies.count).map {
             ["accuracy": result.accuracies[$0], "threshold": result.thresholds[$0], "val": result.vals[$0],
              "far": result.fars[$0]]
         },
         "per_pair": zip(list, distances).map { ["first": $0.first, "second": $0.second, "same": $0.same,
                                                 "distance": $1] as [String: Any] }]
    }
}

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Whether two face images show the same person: their distance and the decision at a threshold.",
        discussion: """
            The distance is the squared Euclidean distance of the L2-normalised embeddings (0 to 4), as `inception \
            verify` scores pairs; below --threshold the faces are called the same person. The network is the face \
            model unless --model or the weights file names another.
            """)

    @OptionGroup var weights: WeightsOption

    @OptionGroup var precision: PrecisionOption

    @Option(help: """
        Same person below this distance (default 1.1, about where facenet's VGGFace2 model separates LFW's pairs; \
        `inception verify --json` gives each fold's threshold for your own weights and data).
        """)
    var threshold = 1.1

    @Flag(help: "Print JSON.")
    var json = false

    @Option(help: """
        Also draw where each face matched the other (Grad-CAM of the similarity of its embedding to the other's) \
        into this folder, as FACE.png.
        """)
    var explain: String?

    @OptionGroup var faces: FacesInPhotosOption

    @OptionGroup var threads: ThreadsOption

    @Argument(help: "Two face images (JPEG or PNG).")
    var images: [String]

    func validate() throws {
        guard images.count == 2 else { throw CLIError("give two images, not \(images.count)") }
        guard threshold.isFinite, threshold >= 0 else { throw CLIError("--threshold must be a distance of 0 or more") }
        if let explain { try FlagRule.output(explain, notAmong: images, flag: "--explain") }
    }

    func run() throws {
        try reportingErrors {
            let net = try weights.load(precision, fallback: .inceptionResNetV1FaceNet)
            let detection = try faces.detection(for: net, wholeWhenNone: false)
            let (embeddings, found) = try FaceEmbedder.embed(images, net, batch: 2, threads: threads.threads,
                                                             detection: detection)
            let distance = FaceDistance.distance(embeddings[images[0]]!, embeddings[images[1]]!)
            let same = distance < threshold
            let overlays = try explain.map { try drawMatch(net, embeddings, into: $0) } ?? []
            if json {
                var result: [String: Any] = ["model": net.name.rawValue, "images": images, "distance": distance,
                                             "threshold": threshold, "same": same]
                if !overlays.isEmpty { result["overlays"] = overlays }
                if detection != nil {
                    result["faces"] = images.map { (found[$0] ?? nil).map(\.record) ?? NSNull() as Any }
                }
                return try printJSON(result)
            }
            for image in images { if let face = found[image] ?? nil { print("\(image): \(faceDescription(face))") } }
            for (image, overlay) in zip(images, overlays) { print("\(image): where it matched → \(overlay)") }
            print(String(format: "distance %.4f: %@ (threshold %.2f)", distance,
                         same ? "the same person" : "different people", threshold))
        }
    }
}

extension Compare {
    /// Each face's Grad-CAM for its similarity to the other face's embedding, drawn into `folder`; the files written.
    func drawMatch(_ net: InceptionModel, _ embeddings: [String: [Double]], into folder: String) throws -> [String] {
        let photos = try images.map(decode)
        let targets = images.reversed().map { ExplanationTarget.similarity(to: embeddings[$0]!.map(Float.init)) }
        let maps = try net.explain(prepared: photos.map(net.prepare), targets: targets, threads: threads.threads)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let names = Explain.overlayNames(images)
        return try images.indices.map { i in
            let file = URL(fileURLWithPath: folder).appendingPathComponent("\(names[images[i]]!).png").path
            try FileOutput.write(try maps[i].overlayPNG(on: photos[i], model: net), to: file)
            return file
        }
    }
}

/// What `verify` and `compare` share: embeddings once per image.
enum FaceEmbedder {
    /// How photos become faces: with a detector, each photo's largest face (unless the options take it whole:
    /// `FacesInPhotosOption.takesWhole`); `wholeWhenNone`: a photo without a face is embedded whole (and counted)
    /// instead of failing.
    struct Detection {
        let detector: FaceDetector, options: FacesInPhotosOption, wholeWhenNone: Bool
    }

    /// Each image's embedding (the face model's, or the pooled features), L2-normalised in Double, and with a
    /// detector the face each one used (nil: the whole photo).
    static func embed(_ paths: [String], _ net: InceptionModel, batch: Int, threads: Int, detection: Detection? = nil,
                      progress: Bool = false) throws -> (embeddings: [String: [Double]], faces: [String: Face?]) {
        var embeddings: [String: [Double]] = [:], faces: [String: Face?] = [:], whole = 0
        let bar = ProgressBar(visible: progress && isatty(2) == 1), started = Date()
        defer { bar.finish() }
        for chunk in paths.chunked(max(1, batch)) {
            let done = embeddings.count, rate = Double(done) / max(Date().timeIntervalSince(started), 1e-9)
            bar.show("embed", done, of: paths.count, detail: String(format: "%d/%d images, %@ left", done,
                                                                  paths.count, ProgressBar.duration(
                                                                      Double(paths.count - done) / max(rate, 1e-9))))
            let prepared = try chunk.map { path -> [Float] in
                let image = try decode(path)
                guard let detection, !detection.options.takesWhole(image, for: net) else { return net.prepare(image) }
                guard let face = try detection.detector.detect(image, threads: threads).first else {
                    guard detection.wholeWhenNone else { throw CLIError("\(path): no face found") }
                    whole += 1
                    faces[path] = .some(nil)
                    return net.prepare(image)
                }
                faces[path] = face
                return try net.prepare(face: face, in: image, margin: detection.options.detection.margin)
            }
            let rows = try net.embed(prepared: prepared, threads: threads)
            let width = rows.shape[1]
            for (i, path) in chunk.enumerated() {
                embeddings[path] = FaceDistance.unit(Array(rows.scalars[(i * width)..<((i + 1) * width)]))
            }
        }
        if whole > 0 {
            let note = "note: no face found in \(whole) of \(paths.count) photos: those were embedded whole\n"
            FileHandle.standardError.write(Data(note.utf8))
        }
        return (embeddings, faces)
    }
}

extension FacesInPhotosOption {
    /// The detection `compare` and `verify` run for `net`, or nil.
    func detection(for net: InceptionModel, wholeWhenNone: Bool) throws -> FaceEmbedder.Detection? {
        try detector(for: net).map {
            FaceEmbedder.Detection(detector: $0, options: self, wholeWhenNone: wholeWhenNone)
        }
    }
}
