import Foundation
import InceptionEngine
import Logging

/// How the command shows the library's `Diagnostics`: each line as it is, on standard error, every level (every
/// other label — the server's — as swift-log's stream handler writes it).
struct DiagnosticLines: LogHandler {
    var logLevel: Logger.Level = .debug
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        FileHandle.standardError.write(Data("\(event.message)\n".utf8))
    }

    static func bootstrap() {
        LoggingSystem.bootstrap { label -> any LogHandler in
            label == Diagnostics.label ? DiagnosticLines() : StreamLogHandler.standardError(label: label)
        }
    }
}
