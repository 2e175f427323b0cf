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

/// The HTTP half's adapter: an `InferenceError` answered as `{"error": message}` with its status (and
/// `Retry-After` when it has a retry hint).
extension InferenceError: HTTPResponseError {
    var status: HTTPResponse.Status {
        switch kind {
        case .badInput: .badRequest
        case .notFound: .notFound
        case .tooLarge: .contentTooLarge
        case .loading, .overloaded, .shuttingDown: .serviceUnavailable
        case .clientGone: .clientClosedRequest
        case .internalError: .internalServerError
        }
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        try InferenceServer.errorResponse(message, status: status, retryAfter: retryAfter)
    }
}

extension InferenceServer {
    static func errorResponse(_ message: String, status: HTTPResponse.Status, retryAfter: Int? = nil) throws
        -> Response
    {
        var headers: HTTPFields = [:]
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        return try json(["error": message], status: status, headers: headers)
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
            response = try InferenceServer.errorResponse(error.body ?? "no such endpoint: \(request.method) "
                                                         + quoted(request.uri.path), status: error.status)
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: context)
        } catch {
            response = try InferenceError(.internalError, "\(error)").response(from: request, context: context)
        }
        // The model label only for models this server has, so that clients cannot grow the label set.
        let model = context.parameters.get("model").flatMap { ModelName(rawValue: $0) }
            .map { servable($0) ? $0.rawValue : "" } ?? ""
        metrics.request(endpoint: context.endpointPath ?? "unmatched", model: model, method: request.method.rawValue,
                        status: response.status.code, duration: .now - started)
        return response
    }
}
