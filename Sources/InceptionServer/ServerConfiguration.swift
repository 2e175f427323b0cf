import Inception
import InceptionEngine

/// What a server is given: its settings, its connections' deadlines, the models it serves.
extension InferenceServer {
    public struct Configuration: Sendable {
        public var host = "127.0.0.1"
        /// 0 picks a free port (reported to `onServerRunning`).
        public var port = 8080
        /// The Open Inference Protocol's gRPC service on this port (0: a free one, reported to `onGRPCRunning`);
        /// nil: off.
        public var grpcPort: Int?
        /// HTTP/2 streams (calls) one gRPC connection may have open at once; each may hold a message of up to
        /// `maxBodyBytes`.
        public var grpcStreamsPerConnection = 16
        public var limits = Batcher.Limits()
        /// Larger request bodies get 413 before they are read (gRPC messages: RESOURCE_EXHAUSTED).
        public var maxBodyBytes = 16 << 20
        /// Images an Open Inference request of JSON numbers may carry at the model's input size: its body limit is
        /// `maxBodyBytes` or that batch as JSON (24 bytes a number), whichever is more; 0 holds JSON to
        /// `maxBodyBytes`.
        public var jsonBatch = 8
        /// Request bytes held at once, all requests together; past it, 503 before the body is read. Nil (the
        /// default): 128 MB, or room for one largest request of JSON numbers of each model, parsed, if that is more.
        public var maxBytesInFlight: Int?
        /// Threads per forward pass (one forward pass runs at a time per model).
        public var threads = Parallel.defaultThreads
        /// Images of more pixels are refused from their header (400), before their pixels are allocated.
        public var maxImagePixels = 25_000_000
        /// Decoding an image that takes longer is stopped (400).
        public var decodeTimeLimit: Duration = .seconds(5)
        /// Threads that decode and preprocess images (off the event loops, below the forward passes' priority).
        public var decodeThreads = 4
        public var timeouts = Timeouts()
        /// After SIGTERM, how long requests already received may take; then the remaining connections are closed.
        public var drainTimeout: Duration = .seconds(10)
        /// Whether `/` answers the page to try the models in a browser (`WebPage`).
        public var page = true
        /// MTCNN for `/v1/faces/detect` and `/v1/models/{face model}/embed?faces=`; nil: those answer 404.
        public var faceDetector: FaceDetector?

        public init() {}
    }

    /// How long a connection may wait in each phase before it is closed (see `ConnectionDeadlines`).
    public struct Timeouts: Sendable {
        /// From the connection's start or its last response to the first byte of the next request.
        public var idle: Duration = .seconds(30)
        /// From a request's first byte to the end of its head.
        public var header: Duration = .seconds(10)
        /// From a request's head to the end of its body.
        public var body: Duration = .seconds(60)

        public init() {}
    }

    /// A model to serve: its name, and how to load it (from a file or the Hub; run once, off the event loops).
    public struct ModelSource: Sendable {
        public let name: ModelName
        public let load: @Sendable () throws -> InceptionModel

        public init(_ name: ModelName, load: @escaping @Sendable () throws -> InceptionModel) {
            (self.name, self.load) = (name, load)
        }

        public static func loaded(_ model: InceptionModel) -> ModelSource { ModelSource(model.name) { model } }
    }
}
