import Foundation
import Hummingbird
import Inception
import InceptionEngine
import InceptionIO
import NIOCore

/// `/v1/models/{model}/explain` (a class activation map over the photo) and `/v1/models/{model}/compare` (two faces:
/// their distance, and where each matched the other). Both go through the admission, byte budget, decode pool and
/// batching of `/v1`'s classify; the backward passes run on the model's batcher thread, the drawing on the decode
/// pool, never on an event loop.
extension InferenceServer {
    /// A decoded photo kept for its overlay: at most the overlay's size, and the size it came in.
    struct Photo: Sendable {
        let image: RGBImage
        let width: Int, height: Int
    }

    func addExplainRoutes(to router: Router<ServerContext>) {
        router.post("/v1/models/:model/explain") { request, context in
            let model = try self.model(context)
            let method = try Self.method(request)
            let target = try Self.classTarget(request, model: model)
            let (photo, explanation) = try await self.explain(request, context, target: target, method: method)
            if Self.wantsJSON(request) {
                var record = explanation.record(model: model, photoWidth: photo.width, photoHeight: photo.height)
                record["model"] = model.name.rawValue
                return try Self.json(record)
            }
            let png = try await self.draw(explanation, on: photo, model: model)
            return Response(status: .ok, headers: [.contentType: "image/png"],
                            body: .init(byteBuffer: ByteBuffer(bytes: png)))
        }
        router.post("/v1/models/:model/compare") { request, context in
            try await self.compare(request, context)
        }
    }

    /// `?method=`: one of `CAMMethod`'s names (default Grad-CAM).
    static func method(_ request: Request) throws -> CAMMethod {
        guard let value = request.uri.queryParameters["method"] else { return .gradCAM }
        guard let method = CAMMethod(rawValue: String(value)) else {
            let names = CAMMethod.allCases.map(\.rawValue).joined(separator: ", ")
            throw InferenceError(.badInput, "method must be one of \(names), not \(quoted(value))")
        }
        return method
    }

    /// `?class=K` (default: the top class), checked against the model's classes.
    static func classTarget(_ request: Request, model: InceptionModel) throws -> ExplanationTarget {
        guard let classes = model.classes else {
            throw InferenceError(.badInput, "\(model.name) has no classifier: POST two faces to "
                                 + "/v1/models/\(model.name)/compare to see where they matched")
        }
        guard let value = request.uri.queryParameters["class"] else { return .topClass }
        guard let k = Int(String(value)), k >= 0, k < classes else {
            throw InferenceError(.badInput,
                                 "class must be a class index from 0 to \(classes - 1), not \(quoted(value))")
        }
        return .classIndex(k)
    }

    /// Whether the client asked for JSON rather than the overlay.
    static func wantsJSON(_ request: Request) -> Bool {
        (request.headers[.accept] ?? "").contains("application/json")
    }

    /// One request's photo, decoded and prepared on the decode pool, and its explanation from the batcher.
    func explain(_ request: Request, _ context: ServerContext, target: ExplanationTarget,
                 method: CAMMethod) async throws -> (Photo, Explanation) {
        let batcher = try batcher(context)
        return try await withAdmission(batcher) { admission in
            let bytes = try reserveBody(request)
            defer { budget.release(bytes) }
            let (photo, pixels) = try await decodePhoto(try await imageBytes(request, context), for: batcher.model)
            let channel = context.channel
            do {
                let explanation = try await batcher.explain(pixels: pixels, target: target, method: method,
                                                            announced: admission.handOver()) { !channel.isActive }
                return (photo, explanation)
            } catch let error as Batcher.Refusal {
                throw refusal(error, model: batcher.model)
            } catch let error as ExplanationError {
                throw InferenceError(.badInput, error.description)
            }
        }
    }

    /// `decode`, keeping the photo too (scaled down to the overlay's size).
    func decodePhoto(_ body: Data, for model: InceptionModel) async throws -> (Photo, [Float]) {
        try await decode(body) { image in
            (Photo(image: Explanation.overlayPhoto(image), width: image.width, height: image.height),
             model.name.spec.preprocessing.apply(image, inputSize: model.inputSize))
        }
    }

    /// The overlay PNG, drawn on the decode pool.
    func draw(_ explanation: Explanation, on photo: Photo, model: InceptionModel) async throws -> Data {
        try await decodePool().run { try explanation.overlayPNG(on: photo.image, model: model) }
    }
}

extension InferenceServer {
    /// Two faces, as a multipart body with two file parts: their distance (`inception compare`'s), the verdict at
    /// `?threshold=` (default 1.1, `compare`'s), and each face's Grad-CAM for its similarity to the other face's
    /// embedding, as base64 PNGs — the bytes `compare --explain` writes.
    func compare(_ request: Request, _ context: ServerContext) async throws -> Response {
        let batcher = try batcher(context)
        let model = batcher.model
        let threshold = try Self.threshold(request)
        return try await withAdmission(batcher) { admission in
            let bytes = try reserveBody(request)
            defer { budget.release(bytes) }
            let faces = try Self.twoImages(request, try await collectBody(request))
            let first = try await decodePhoto(faces[0], for: model)
            let second = try await decodePhoto(faces[1], for: model)
            let (photos, pixels) = ([first.0, second.0], [first.1, second.1])
            let channel = context.channel, output = model.embeddingOutput
            do {
                var rows: [[Float]] = []
                for x in pixels {
                    rows.append(try await batcher.run(pixels: x, output: output, announced: admission.handOver()) {
                        !channel.isActive
                    })
                }
                let units = rows.map(FaceDistance.unit)
                let distance = FaceDistance.distance(units[0], units[1])
                var overlays: [String] = []
                for i in 0..<2 {
                    let target = ExplanationTarget.similarity(to: units[1 - i].map(Float.init))
                    let explanation = try await batcher.explain(pixels: pixels[i], target: target, method: .gradCAM) {
                        !channel.isActive
                    }
                    overlays.append(try await draw(explanation, on: photos[i], model: model).base64EncodedString())
                }
                return try Self.json(["model": model.name.rawValue, "distance": distance, "threshold": threshold,
                                      "same": distance < threshold, "overlays": overlays])
            } catch let error as Batcher.Refusal {
                throw refusal(error, model: model)
            }
        }
    }

    /// `?threshold=`: a distance of 0 or more (default 1.1, as `inception compare`).
    static func threshold(_ request: Request) throws -> Double {
        guard let value = request.uri.queryParameters["threshold"] else { return 1.1 }
        guard let threshold = Double(String(value)), threshold.isFinite, threshold >= 0 else {
            throw InferenceError(.badInput, "threshold must be a distance of 0 or more, not \(quoted(value))")
        }
        return threshold
    }

    /// The bodies of a multipart request's first two file parts (or parts named `a` and `b`).
    static func twoImages(_ request: Request, _ body: Data) throws -> [Data] {
        do {
            guard let boundary = try Multipart.boundary(contentType: request.headers[.contentType] ?? "") else {
                throw InferenceError(.badInput, "send the two faces as multipart/form-data, one file part each")
            }
            let parts = try Multipart.parts(of: body, boundary: boundary)
            let named = ["a", "b"].compactMap { name in parts.first { $0.name == name } }
            let files = named.count == 2 ? named : parts.filter { $0.filename != nil }
            guard files.count >= 2 else {
                throw InferenceError(.badInput, "the multipart body has \(files.count) file parts; send two faces")
            }
            return [files[0].body, files[1].body]
        } catch let error as Multipart.Error {
            throw InferenceError(.badInput, error.description)
        }
    }
}
