import ArgumentParser
import Foundation
import Inception
import InceptionIO

struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: """
            Write image embeddings as (N, D) float32 .npy: the face model's L2-normalised embedding, or the pooled \
            features before the classifier.
            """)

    @OptionGroup var weights: WeightsOption

    @OptionGroup var precision: PrecisionOption

    @Option(help: "Output .npy.")
    var output: String

    @Flag(help: "Print what was written as JSON.")
    var json = false

    @OptionGroup var faces: FacesInPhotosOption

    @Flag(help: "With face detection: every face of each photo, largest first, not only the largest.")
    var allFaces = false

    @OptionGroup var input: ImageBatches

    func validate() throws {
        try FlagRule.output(output, notAmong: input.images + [weights.weights].compactMap { $0 }, json: json)
    }

    func run() throws {
        try reportingErrors {
            let job = try BatchJob.fromEnvironment()
            let net = try job.together("loading") {
                try input.checkFiles()
                let net = try weights.load(precision)
                try net.checkMemory(batch: min(input.batch, input.images.count), size: net.inputSize)
                return net
            }
            // Under mpirun photos are embedded as they are (crops, usually) unless --detect asks for a search, which
            // runs in one process.
            if job.ranks > 1 && faces.detect == true {
                throw CLIError("finding faces runs in one process: run without mpirun, or pass --no-detect")
            }
            if job.ranks == 1, let detector = try faces.detector(for: net) { return try embedFaces(net, detector) }
            let writer = try job.together("opening the output") {
                try job.writer(shape: [input.images.count, net.width(of: net.embeddingOutput)!], to: output)
            }
            try job.run(count: input.images.count, step: input.batch) { inputs in
                guard !inputs.isEmpty else { return [] }
                let prepared = try inputs.map { net.prepare(try decode(input.images[$0])) }
                return BatchRecords.bytes(try net.embed(prepared: prepared, threads: input.threads.threads).scalars)
            } collect: { inputs, bytes in
                try writer!.put(BatchRecords.floats(bytes), atRow: inputs.lowerBound)
            }
            try writer?.finish()
            if json && job.isRoot {
                try printJSON(["model": net.name.rawValue, "output": output, "shape": writer!.shape,
                               "result": net.embeddingOutput.rawValue])
            }
        }
    }
}

extension Embed {
    /// The embeddings of the faces found in the photos (the largest of each, or all of them): one row per face, each
    /// named with its photo and box; a photo that is already a crop at the network's input size is embedded whole
    /// unless --detect was given. Photos without a face or unreadable are reported, and the exit status is then 1.
    func embedFaces(_ net: InceptionModel, _ detector: FaceDetector) throws {
        var search = PhotoSearch(detector, threads: input.threads.threads)
        var rows: [Float] = [], records: [[String: Any]] = [], pending: [[Float]] = []
        func flush() throws {
            guard !pending.isEmpty else { return }
            rows += try net.embed(prepared: pending, threads: input.threads.threads).scalars
            pending = []
        }
        for path in input.images {
            guard let image = search.photo(path) else { continue }
            if faces.takesWhole(image, for: net) {
                pending.append(net.prepare(image))
                records.append(["photo": path, "row": records.count, "face": NSNull()])
            } else {
                guard let found = search.faces(in: image, of: path) else { continue }
                for face in allFaces ? found : Array(found.prefix(1)) {
                    pending.append(try net.prepare(face: face, in: image, margin: faces.detection.margin))
                    records.append(["photo": path, "row": records.count, "face": face.record])
                    if !json { print("row \(records.count - 1): \(path) \(faceDescription(face))") }
                }
            }
            if pending.count >= input.batch { try flush() }
        }
        try flush()
        let width = net.width(of: net.embeddingOutput)!
        try NPY.write(shape: [records.count, width], values: rows, to: URL(fileURLWithPath: output))
        if json {
            try printJSON(["model": net.name.rawValue, "output": output, "shape": [records.count, width],
                           "result": net.embeddingOutput.rawValue, "rows": records])
        }
        try search.finish()
    }
}
