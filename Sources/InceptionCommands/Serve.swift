import ArgumentParser
import Foundation
import Inception
import InceptionServer

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve models over HTTP (and gRPC) with dynamic batching (see docs/serving.md).",
        discussion: """
            POST /v1/models/{model}/classify?top=5 and /v1/models/{model}/embed take image bytes or \
            multipart/form-data (part 'image' or 'file'); /v1/models/{model}/explain?class=K&method=M answers the \
            class activation map over the photo as a PNG (JSON with Accept: application/json), and \
            /v1/models/{face model}/compare two faces' distance and where they matched; GET /v1/models, /health, \
            /ready, /metrics, and / a page to try the models in a browser (--no-ui: none). The Open \
            Inference Protocol (KServe V2, as Triton's clients speak it): GET /v2, /v2/health/live|ready, \
            /v2/models/{model}[/ready], POST /v2/models/{model}/infer; and with --grpc-port its gRPC service \
            (inference.GRPCInferenceService, as tritonclient.grpc calls it). SIGTERM or SIGINT: stop accepting \
            connections, answer the requests already received, exit.
            """)

    @Option(help: """
        A network to serve; repeat for several. Default: the network each --weights file names, else inception_v4.
        """)
    var model: [ModelName] = []

    @Option(help: """
        Weights (safetensors or PyTorch .pt/.pth/.bin) for each --model, in the same order. Default: the released \
        weights from the Hugging Face Hub.
        """)
    var weights: [String] = []

    @Option(help: "Serve random weights made from this seed instead (for load tests and trying the API).")
    var randomWeights: UInt64?

    @Option(name: .customLong("host"), help: """
        Address to listen on. Default: INCEPTION_HOST when set (the container image sets 0.0.0.0), else 127.0.0.1.
        """)
    var requestedHost: String?

    var host: String { requestedHost ?? ProcessInfo.processInfo.environment["INCEPTION_HOST"] ?? "127.0.0.1" }

    @Option(help: "Port to listen on (0: any free port, printed at start).")
    var port = 8080

    @Option(help: """
        Also serve the Open Inference Protocol over gRPC on this port (0: any free port, printed at start). \
        Default: no gRPC.
        """)
    var grpcPort: Int?

    @Option(help: "Most images per forward pass.")
    var maxBatch = 8

    @Option(help: "How long the first request of a batch waits for others, in milliseconds.")
    var maxDelayMs = 5

    @Option(help: "Requests that may wait per model; past it, 503 with Retry-After.")
    var maxQueue = 64

    @Option(help: """
        Largest request body in bytes; larger gets 413. An Open Inference request of JSON numbers may be a batch of \
        8 at the model's input size if that is more (52 MB at 299²).
        """)
    var maxBodyBytes = 16 << 20

    @Option(help: """
        Request bytes held at once, all requests together (each counted from its Content-Length, else \
        --max-body-bytes, before it is read); past it, 503. Default: 134217728, or room for one batch of 8 \
        as JSON numbers, parsed, if that is more (5 × 52 MB at 299²).
        """)
    var maxBytesInFlight: Int?

    @Option(help: "Images of more pixels are refused from their header, before decoding (400).")
    var maxImagePixels = 25_000_000

    @Option(help: "Seconds an image may take to decode; a slower one is refused (400).")
    var decodeTimeLimit = 5.0

    @Option(help: "Threads that decode images, below the forward passes' priority.")
    var decodeThreads = 4

    @Option(help: "Seconds a connection may stay idle (before a request's first byte) before it is closed.")
    var idleTimeout = 30.0

    @Option(help: "Seconds from a request's first byte to the end of its headers before the connection is closed.")
    var headerTimeout = 10.0

    @Option(help: "Seconds from a request's headers to the end of its body before the connection is closed.")
    var bodyTimeout = 60.0

    @Option(help: "After SIGTERM, seconds the requests already received may take; then remaining connections close.")
    var drainTimeout = 10.0

    @Flag(name: .customLong("no-ui"), help: "Do not serve the page at / that tries the models in a browser.")
    var noUI = false

    @Option(help: """
        facenet-pytorch's MTCNN weights (pnet.pt, rnet.pt, onet.pt) for /v1/faces/detect and embed?faces= \
        (default: found in a Python environment with facenet-pytorch or the Hugging Face cache; none: those \
        routes answer 404).
        """)
    var detectorWeights: String?

    @OptionGroup var precision: PrecisionOption

    @OptionGroup var threads: ThreadsOption

    func validate() throws {
        guard maxBatch >= 1, maxQueue >= 1, maxDelayMs >= 0, maxBodyBytes >= 1, (maxBytesInFlight ?? 1) >= 1,
              maxImagePixels >= 1, decodeThreads >= 1 else {
            throw CLIError("""
                --max-batch, --max-queue, --max-body-bytes, --max-bytes-in-flight, --max-image-pixels and \
                --decode-threads must be at least 1, --max-delay-ms at least 0
                """)
        }
        for (name, seconds) in [("--decode-time-limit", decodeTimeLimit), ("--idle-timeout", idleTimeout),
                                ("--header-timeout", headerTimeout), ("--body-timeout", bodyTimeout),
                                ("--drain-timeout", drainTimeout)] where !(seconds > 0 && seconds <= 86_400) {
            throw CLIError("\(name) must be a number of seconds above 0 and at most 86400")
        }
        guard (0...65535).contains(port) else { throw CLIError("--port must be from 0 to 65535") }
        if let grpcPort {
            guard (0...65535).contains(grpcPort) else { throw CLIError("--grpc-port must be from 0 to 65535") }
            guard grpcPort != port || port == 0 else { throw CLIError("--grpc-port must differ from --port") }
        }
        try FlagRule.batch(maxBatch, "--max-batch")
        let models = self.models  // opens each weights file for its metadata: once
        guard weights.isEmpty || weights.count == models.count else {
            throw CLIError("give one --weights per --model (\(models.count) models, \(weights.count) weights)")
        }
        guard weights.isEmpty || randomWeights == nil else {
            throw CLIError("--weights and --random-weights exclude each other")
        }
        guard Set(models).count == models.count else { throw CLIError("a --model is given twice") }
    }

    /// The --model list; without one, the network each --weights file's metadata names (Inception-v4 for a file
    /// that names none, or when no weights are given).
    var models: [ModelName] {
        if !model.isEmpty { return model }
        if weights.isEmpty { return [.inceptionV4] }
        return weights.map { (try? CheckpointMetadata(contentsOf: URL(fileURLWithPath: $0)).model) ?? .inceptionV4 }
    }

    func run() async throws {
        let route: PrecisionRoute
        do { route = try precision.route() } catch { throw reported(error) }
        let models = self.models
        var configuration = InferenceServer.Configuration()
        configuration.host = host
        configuration.port = port
        configuration.grpcPort = grpcPort
        configuration.limits = .init(maxBatch: maxBatch, maxDelay: .milliseconds(maxDelayMs), maxQueue: maxQueue)
        configuration.maxBodyBytes = maxBodyBytes
        configuration.maxBytesInFlight = maxBytesInFlight
        configuration.maxImagePixels = maxImagePixels
        configuration.decodeTimeLimit = .seconds(decodeTimeLimit)
        configuration.decodeThreads = decodeThreads
        configuration.page = !noUI
        configuration.timeouts.idle = .seconds(idleTimeout)
        configuration.timeouts.header = .seconds(headerTimeout)
        configuration.timeouts.body = .seconds(bodyTimeout)
        configuration.drainTimeout = .seconds(drainTimeout)
        configuration.threads = threads.threads
        if let folder = detectorWeights.map({ URL(fileURLWithPath: $0) }) ?? FaceDetector.weightsDirectory() {
            do { configuration.faceDetector = try FaceDetector(weights: folder) } catch { throw reported(error) }
        }
        let sources = models.enumerated().map { i, name in
            let source: WeightsSource = weights.isEmpty
                ? randomWeights.map { .random(seed: $0) } ?? .released(.withProgressBar())
                : .file(URL(fileURLWithPath: weights[i]))
            return InferenceServer.ModelSource(name) {
                try InceptionModel(try ModelWeights(name, from: source), route: route)
            }
        }
        let server = InferenceServer(models: sources, configuration: configuration)
        do {
            let names = models.map(\.rawValue).joined(separator: ", ")
            let faces = configuration.faceDetector == nil ? "" : "; faces found by MTCNN"
            let say: @Sendable (String) -> Void = { line in
                FileHandle.standardOutput.write(Data("inception serve: \(line)\n".utf8))
            }
            try await server.run { port in
                say("listening on http://\(host):\(port) (\(names))" + faces)
            } onGRPCRunning: { port in
                say("gRPC on \(host):\(port) (\(names))")
            }
        } catch {
            throw reported(error)
        }
    }
}
