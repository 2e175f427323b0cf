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

    /// Reads the image of a request, preprocesses it for the model, and runs it in the next batch. Admission comes
    /// first — a place in the model's queue and the request's bytes within the server's budget — so that an
    /// overloaded server answers 503 before it reads a body. Decoding runs on the decode pool with a time limit.
    func infer(_ request: Request, _ context: ServerContext, output: OutputName) async throws
        -> (InceptionModel, [Float])
    {
        let batcher = try batcher(context)
        let model = batcher.model
        guard model.graph.outputs[output] != nil else {
            let problem = InputError.unknownOutput(output, model: model.name.rawValue, available: model.outputNames)
            throw APIError(.badRequest, problem.description)
        }
        return try await withAdmission(batcher) { admission in
            let bytes = try reserveBody(request)
            defer { budget.release(bytes) }
            let pixels = try await decode(try await imageBytes(request, context), for: model)
            let channel = context.channel
            let row: [Float]
            do {
                row = try await batcher.run(pixels: pixels, output: output, announced: admission.handOver()) {
                    !channel.isActive
                }
            } catch let error as Batcher.Refusal {
                throw refusal(error, model: model)
            }
            // The weights' fault, not the request's: 500 with the CLI's line.
            guard row.allSatisfy(\.isFinite) else {
                throw APIError(.internalServerError, OutputError.nonFinite(output: output).description)
            }
            return (model, row)
        }
    }

    /// The bytes a request may bring (its Content-Length, or the body limit), reserved in the server's budget.
    /// `json`: how many of those bytes are JSON that the request's parser turns into objects (an Open Inference
    /// request without binary data); each is reserved `jsonExpansion` times, and a request that could never fit
    /// the budget is refused with 413.
    func reserveBody(_ request: Request, limit: Int? = nil, json: ((Int) -> Int)? = nil) throws -> Int {
        let limit = limit ?? configuration.maxBodyBytes
        let announced = request.headers[.contentLength].flatMap(Int.init)
        if let announced, announced > limit {
            throw APIError(.contentTooLarge, "the request body is larger than the limit of \(limit) bytes")
        }
        var bytes = announced ?? limit
        if let json {
            bytes += (Self.jsonExpansion - 1) * min(bytes, max(0, json(bytes)))
            guard bytes <= budget.limit else {
                throw APIError(.contentTooLarge, "a JSON request of this size would take more than the server's "
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
            throw APIError(.serviceUnavailable, message, retryAfter: 1)
        }
        return bytes
    }

    /// Peak memory per byte of JSON: the text, its numbers as Float (`JSONScanner`: 4 bytes for at least 2 of
    /// text, "1,1,…" being the worst case) and each image's pixels (as many again): at most 5 bytes a byte; a
    /// client's floats ("-0.12345678901234567, ") take 1.4. (Foundation's parser took 28.)
    static let jsonExpansion = 5

    /// The image's normalised pixels, decoded and preprocessed on the decode pool within the time limit.
    func decode(_ body: Data, for model: InceptionModel) async throws -> [Float] {
        guard let pool = decoders.withLock({ $0 }) else {
            throw APIError(.serviceUnavailable, "the server is not running")
        }
        let (pixels, limit) = (configuration.maxImagePixels, configuration.decodeTimeLimit)
        do {
            return try await pool.run {
                model.name.preprocessing.apply(try RGBImage(decoding: body, maximumPixels: pixels, timeLimit: limit),
                                               inputSize: model.inputSize)
            }
        } catch let error as ImageError {
            throw APIError(.badRequest, error.description)
        } catch let error as Batcher.Refusal {
            throw APIError(.serviceUnavailable, error.description, retryAfter: 1)
        }
    }

    /// A batcher's refusal as the HTTP answer: 503 (counted) when overloaded or stopping; 499 when the client left.
    func refusal(_ refusal: Batcher.Refusal, model: InceptionModel) -> APIError {
        switch refusal {
        case let .overloaded(_, retryAfter):
            metrics.refused(model: model.name.rawValue)
            return APIError(.serviceUnavailable, refusal.description, retryAfter: retryAfter)
        case .shuttingDown:
            return APIError(.serviceUnavailable, refusal.description, retryAfter: 1)
        case .clientGone:
            return APIError(.clientClosedRequest, refusal.description)
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
                throw APIError(.badRequest, "the multipart body has no part named 'image' or 'file' and no file part")
            }
            return part.body
        } catch let error as Multipart.Error {
            throw APIError(.badRequest, error.description)
        }
    }

    /// The whole body, at most `limit` (`maxBodyBytes` unless given; 413 beyond); 499 when the client disconnects
    /// while sending it.
    func collectBody(_ request: Request, limit: Int? = nil) async throws -> Data {
        let limit = limit ?? configuration.maxBodyBytes
        do {
            return Data(try await request.body.collect(upTo: limit).readableBytesView)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "the request body is larger than the limit of \(limit) bytes")
        } catch {
            throw APIError(.clientClosedRequest, "the connection closed before the request body was complete")
        }
    }
}
