import ArgumentParser
import Foundation
import Inception
import InceptionIO

/// `inception faces bench`: the time MTCNN takes on a photo, and with --weights the whole path to every face's
/// embedding, medians over runs after warm-up (scripts/bench_faces.py sets them against facenet-pytorch).
struct FacesBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Median time to find a photo's faces, and with --weights to embed every one of them.")

    @OptionGroup var detection: FaceDetectionOption

    @Option(help: "Also embed every face with these face-model weights (the photo → embeddings path).")
    var weights: String?

    @OptionGroup var timing: TimingOption

    @Flag(help: "Print JSON.")
    var json = false

    @OptionGroup var threads: ThreadsOption

    @Argument(help: "A JPEG or PNG photo.")
    var photo: String

    func run() throws {
        try reportingErrors {
            let detector = try detection.load()
            let net = try weights.map { try InceptionModel(try ModelWeights(.inceptionResNetV1FaceNet,
                                                                             file: URL(fileURLWithPath: $0))) }
            let image = try decode(photo)
            var faces: [Face] = []
            var times: [Double] = []
            let (warmup, runs) = (timing.warmup, timing.runs)
            for run in 0..<(warmup + runs) {
                let start = DispatchTime.now().uptimeNanoseconds
                faces = try detector.detect(image, threads: threads.threads)
                if let net, !faces.isEmpty {
                    _ = try net.embed(faces: faces, in: image, margin: detection.margin, threads: threads.threads)
                }
                if run >= warmup { times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6) }
            }
            let median = times.sorted()[times.count / 2]
            let what = net == nil ? "detection" : "detection and embedding"
            if json {
                return try printJSON(["photo": photo, "width": image.width, "height": image.height,
                                      "faces": faces.count, "measured": what, "median_ms": median, "times_ms": times,
                                      "threads": threads.threads])
            }
            print(String(format: "%@ (%d×%d, %d faces): %@ median %.1f ms over %d runs, %d threads", photo,
                         image.width, image.height, faces.count, what, median, runs, threads.threads))
        }
    }
}
