import Foundation
import Hummingbird
import Inception
import NIOCore

extension HTTPResponse.Status {
    /// nginx's status for a request whose client closed the connection before the answer (counted, never read).
    static let clientClosedRequest = HTTPResponse.Status(code: 499, reasonPhrase: "Client Closed Request")
}

/// The request context: Hummingbird's, plus the connection, whose state tells whether the client is still there.
struct ServerContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// An error answered as `{"error": message}` with its status (and `Retry-After` for 503).
struct APIError: HTTPResponseError {
    let status: HTTPResponse.Status
    let message: String
    let retryAfter: Int?

    init(_ status: HTTPResponse.Status, _ message: String, retryAfter: Int? = nil) {
        (self.status, self.message, self.retryAfter) = (status, message, retryAfter)
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers: HTTPFields = [:]
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        return try InferenceServer.json(["error": message], status: status, headers: headers)
    }
}

/// Counts every request by endpoint and status and times it. An error that is not an HTTP error is a bug of
/// ours: 500 with its one-line description.
struct RequestMetrics: RouterMiddleware {
    typealias Context = ServerContext
    let metrics: ServerMetrics
    let servable: @Sendable (ModelName) -> Bool

    func handle(_ request: Request, context: Context,
                next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        let response: Response
        do {
            response = try await next(request, context)
        } catch let error as HTTPError {
            // Hummingbird's own (an unknown path, say): JSON like ours.
            response = try APIError(error.status, error.body
                                    ?? "no such endpoint: \(request.method) \(request.uri.path)")
                .response(from: request, context: context)
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: context)
        } catch {
            response = try APIError(.internalServerError, "\(error)").response(from: request, context: context)
        }
        // The model label only for models this server has, so that clients cannot grow the label set.
        let model = context.parameters.get("model").flatMap { ModelName(rawValue: $0) }
            .map { servable($0) ? $0.rawValue : "" } ?? ""
        metrics.request(endpoint: context.endpointPath ?? "unmatched", model: model, method: request.method.rawValue,
                        status: response.status.code, duration: .now - started)
        return response
    }
}
