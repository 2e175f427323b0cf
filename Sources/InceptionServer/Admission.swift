import Foundation
import Hummingbird
import Inception
import InceptionIO
import NIOCore

/// How a request gets in: a place in its model's queue (503 past it), its bytes within the server's budget (413 or
/// 503), its body read within the limit and its image decoded off the event loops within the time limit.
extension InferenceServer {
    /// A request's place in its model's queue, held from `Batcher.admit` until the batcher takes it over.
    final class Admission {
        private(set) var held = true

        /// Pass as `announced:` to the run that takes the place over: true the first time, false after. The place
        /// is handed over before that run is called, since the batcher takes it even when the run then throws.
        func handOver() -> Bool {
            defer { held = false }
            return held
        }
    }

    /// `body` with a place in `batcher`'s queue (503 with a retry hint when there is none, before any byte of the
    /// body is read), counted in progress; a place `body` does not hand over is given back when it ends.
    func withAdmission<R>(_ batcher: Batcher, _ body: (Admission) async throws -> R) async throws -> R {
        let model = batcher.model
        metrics.inProgress(model: model.name.rawValue, by: 1)
        defer { metrics.inProgress(model: model.name.rawValue, by: -1) }
        do { try batcher.admit() } catch { throw refusal(error, model: model) }
        let admission = Admission()
        defer { if admission.held { batcher.withdraw() } }
        return try await body(admission)
    }

    /// The bytes a request may bring (its Content-Length, or the body limit), reserved in the server's budget.
    /// `json`: how many of those bytes are JSON that the request's parser turns into objects (an Open Inference
    /// request without binary data); each is reserved `jsonExpansion` times, and a request that could never fit
    /// the budget is refused with 413.
    func reserveBody(_ request: Request, limit: Int? = nil, json: ((Int) -> Int)? = nil) throws -> Int {
        let limit = limit ?? configuration.maxBodyBytes
        let announced = request.headers[.contentLength].flatMap(Int.init)
        if let announced, announced > limit {
            throw InferenceError(.tooLarge, "the request body is larger than the limit of \(limit) bytes")
        }
        var bytes = announced ?? limit
        if let json {
            bytes += (Self.jsonExpansion - 1) * min(bytes, max(0, json(bytes)))
            guard bytes <= budget.limit else {
                throw InferenceError(.tooLarge, "a JSON request of this size would take more than the server's "
                               + "\(budget.limit) bytes of requests in flight once parsed; "
                               + "send the tensor as binary data")
            }
        }
        return try reserve(bytes)
    }

    /// `bytes` reserved in the server's budget (given back by the caller), or 503 with a retry hint.
    func reserve(_ bytes: Int) throws -> Int {
        guard budget.reserve(bytes) else {
            let message = "the server is busy: it is already receiving \(budget.limit) bytes of requests"
            throw InferenceError(.overloaded, message, retryAfter: 1)
        }
        return bytes
    }

    /// Peak memory per byte of JSON: the text, its numbers as Float (`JSONScanner`: 4 bytes for at least 2 of
    /// text, "1,1,…" being the worst case) and each image's pixels (as many again): at most 5 bytes a byte; a
    /// client's floats ("-0.12345678901234567, ") take 1.4.
    static let jsonExpansion = 5

    /// The image's normalised pixels, decoded and preprocessed on the decode pool within the time limit.
    func decode(_ body: Data, for model: InceptionModel) async throws -> [Float] {
        try await decode(body) { model.name.spec.preprocessing.apply($0, inputSize: model.inputSize) }
    }

    /// The decode pool, or 503 once the server has stopped.
    func decodePool() throws -> DecodePool {
        guard let pool = decoders.withLock({ $0 }) else {
            throw InferenceError(.shuttingDown, "the server is not running")
        }
        return pool
    }

    /// `use` of the image, decoded on the decode pool within the pixel and time limits (400 for a bad image).
    func decode<T: Sendable>(_ body: Data, _ use: @escaping @Sendable (RGBImage) -> T) async throws -> T {
        let pool = try decodePool()
        let (pixels, limit) = (configuration.maxImagePixels, configuration.decodeTimeLimit)
        do {
            return try await pool.run { use(try RGBImage(decoding: body, maximumPixels: pixels, timeLimit: limit)) }
        } catch let error as ImageError {
            throw InferenceError(.badInput, error.description)
        } catch let error as Batcher.Refusal {
            throw InferenceError(.shuttingDown, error.description, retryAfter: 1)
        }
    }

    /// A batcher's refusal as the HTTP answer: 503 (counted) when overloaded or stopping; 499 when the client left.
    func refusal(_ refusal: Batcher.Refusal, model: InceptionModel) -> InferenceError {
        switch refusal {
        case let .overloaded(_, retryAfter):
            metrics.refused(model: model.name.rawValue)
            return InferenceError(.overloaded, refusal.description, retryAfter: retryAfter)
        case .shuttingDown:
            return InferenceError(.shuttingDown, refusal.description, retryAfter: 1)
        case .clientGone:
            return InferenceError(.clientGone, refusal.description)
        }
    }

    /// The body, or its `image`/`file` part when it is multipart/form-data; at most `maxBodyBytes`. A client that
    /// disconnects while sending is answered 499 (nobody reads it; the metrics count it).
    func imageBytes(_ request: Request, _ context: ServerContext) async throws -> Data {
        let body = try await collectBody(request)
        do {
            let contentType = request.headers[.contentType] ?? ""
            guard let boundary = try Multipart.boundary(contentType: contentType) else { return body }
            guard let part = Multipart.upload(in: try Multipart.parts(of: body, boundary: boundary)) else {
                throw InferenceError(.badInput,
                                     "the multipart body has no part named 'image' or 'file' and no file part")
            }
            return part.body
        } catch let error as Multipart.Error {
            throw InferenceError(.badInput, error.description)
        }
    }

    /// The whole body, at most `limit` (`maxBodyBytes` unless given; 413 beyond); 499 when the client disconnects
    /// while sending it.
    func collectBody(_ request: Request, limit: Int? = nil) async throws -> Data {
        let limit = limit ?? configuration.maxBodyBytes
        do {
            return Data(try await request.body.collect(upTo: limit).readableBytesView)
        } catch is NIOTooManyBytesError {
            throw InferenceError(.tooLarge, "the request body is larger than the limit of \(limit) bytes")
        } catch {
            throw InferenceError(.clientGone, "the connection closed before the request body was complete")
        }
    }
}
