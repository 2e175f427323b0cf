import Foundation
import Hummingbird
import Inception
import InceptionEngine
import InceptionIO

/// `/v1/faces/detect` (MTCNN's boxes, probabilities and landmarks, as `inception faces detect --json`) and
/// `/v1/models/{model}/embed?faces=all|largest` (each face's embedding, as `inception embed --all-faces`). Bodies are
/// reserved in the byte budget; photos are decoded and searched on the decode pool within the pixel and time limits
/// (never on an event loop), at most `decodeThreads` searches at once past which the server answers 503; embeddings
/// go through the model's admission and batcher.
extension InferenceServer {
    func addFaceRoutes(to router: Router<ServerContext>) {
        router.post("/v1/faces/detect") { request, context in
            let detector = try self.faceDetector()
            guard self.searches.withLock({ count in
                guard count < self.configuration.decodeThreads else { return false }
                count += 1
                return true
            }) else {
                throw InferenceError(.overloaded, "the server is busy finding faces in other photos", retryAfter: 1)
            }
            defer { self.searches.withLock { $0 -= 1 } }
            let bytes = try self.reserveBody(request)
            defer { self.budget.release(bytes) }
            let (size, faces) = try await self.search(try await self.imageBytes(request, context), detector) {
                image, faces in ((image.width, image.height), faces)
            }
            return try Self.json(["width": size.0, "height": size.1, "faces": faces.map(\.record)])
        }
    }

    /// The server's MTCNN, or 404 naming the remedy.
    func faceDetector() throws -> FaceDetector {
        guard let detector = configuration.faceDetector else {
            throw InferenceError(.notFound, "face detection is off: start the server with --detector-weights "
                                 + "(facenet-pytorch's MTCNN weights)")
        }
        return detector
    }

    /// `?faces=`: `all` or `largest`.
    static func allFaces(_ value: String) throws -> Bool {
        guard value == "all" || value == "largest" else {
            throw InferenceError(.badInput, "faces must be all or largest, not \(quoted(value))")
        }
        return value == "all"
    }

    /// The photo decoded and searched for faces on the decode pool (one thread each), then `use` of both there.
    func search<T: Sendable>(_ body: Data, _ detector: FaceDetector,
                             _ use: @escaping @Sendable (RGBImage, [Face]) -> T) async throws -> T {
        let result: Result<T, Error> = try await decode(body) { image in
            Result { use(image, try detector.detect(image, threads: 1)) }
        }
        do { return try result.get() } catch let error as MemoryError {
            throw InferenceError(.tooLarge, error.description)
        }
    }

    /// Each face's embedding (the largest face's alone unless `all`), with its box.
    func embedFaces(_ request: Request, _ context: ServerContext, all: Bool) async throws -> Response {
        let batcher = try batcher(context)
        let model = batcher.model, output = model.embeddingOutput
        let detector = try faceDetector()
        return try await withAdmission(batcher) { admission in
            let bytes = try reserveBody(request)
            defer { budget.release(bytes) }
            let found = try await search(try await imageBytes(request, context), detector) { image, faces in
                (all ? faces : Array(faces.prefix(1))).compactMap { face in
                    (try? model.prepare(face: face, in: image)).map { (face, $0) }
                }
            }
            let channel = context.channel
            var records: [[String: Any]] = []
            do {
                for (face, pixels) in found {
                    let row = try await batcher.run(pixels: pixels, output: output, announced: admission.handOver()) {
                        !channel.isActive
                    }
                    var record = face.record
                    record["embedding"] = row.map(Double.init)
                    records.append(record)
                }
            } catch let error as Batcher.Refusal {
                throw refusal(error, model: model)
            }
            return try Self.json(["model": model.name.rawValue, "output": output.rawValue,
                                  "dimension": model.width(of: output)!, "faces": records])
        }
    }
}

extension Sequence {
    /// `transform` of each element in order, awaited one at a time.
    func asyncMap<T>(_ transform: (Element) async throws -> T) async throws -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
