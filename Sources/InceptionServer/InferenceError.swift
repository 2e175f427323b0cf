/// Why the server did not answer a request, one type for every protocol: `/v1`, `/v2` and gRPC are thin adapters
/// that map its kind to their own status (`InferenceError.status` for HTTP, `.code` for gRPC). The message is the
/// one line the CLI would print; whatever a client sent is quoted bounded (`quoted`), so a message stays short.
struct InferenceError: Error, CustomStringConvertible {
    enum Kind: Equatable {
        /// The request is malformed or names what the model does not have.
        case badInput
        /// No such model on this server.
        case notFound
        /// The request is larger than a limit, or than the server could ever hold.
        case tooLarge
        /// The model is still loading (try again later).
        case loading
        /// The queue or the byte budget is full (try again after `retryAfter`).
        case overloaded
        /// The server is stopping.
        case shuttingDown
        /// The client left before its answer.
        case clientGone
        /// Our fault (weights that give non-finite outputs, a bug): the answer names it.
        case internalError
    }

    let kind: Kind
    let message: String
    /// Seconds after which a retry may succeed.
    let retryAfter: Int?

    init(_ kind: Kind, _ message: String, retryAfter: Int? = nil) {
        // Whatever went into it, a message stays under 1 KB (the wire's limits are 8–16 KB for all headers).
        let bounded = message.utf8.count <= 1000 ? message
            : String(decoding: message.utf8.prefix(900), as: UTF8.self) + "…"
        (self.kind, self.message, self.retryAfter) = (kind, bounded, retryAfter)
    }

    var description: String { message }
}

/// A client's text in a message: as it is up to 40 characters (Unicode scalars: a character may hold any number
/// of combining marks), else its first 40 and its length; control characters escaped, so that the message stays one
/// short line.
func quoted(_ text: some StringProtocol) -> String {
    let count = text.unicodeScalars.count
    let shown = text.unicodeScalars.prefix(40).map {
        $0.value < 0x20 || $0.value == 0x7F ? "\\u{\(String($0.value, radix: 16))}" : String($0)
    }.joined()
    return count <= 40 ? "'\(shown)'" : "'\(shown)…' (\(count) characters)"
}

/// A client's list (a shape, say) in a message: its first 8 entries and its length when longer.
func quoted(_ values: [some Any]) -> String {
    values.count <= 8 ? "\(values)" : "\(Array(values.prefix(8)).description.dropLast()), …] (\(values.count) entries)"
}
