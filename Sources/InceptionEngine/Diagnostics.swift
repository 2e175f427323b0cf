import Logging

/// The lines the library has for a person — a measurement that takes a moment, a precision route the system
/// refused. The library never writes to standard error and never ends the process: it hands these lines to
/// swift-log under the label `Diagnostics.label`, so an app decides where they go with its own
/// `LoggingSystem.bootstrap`; the `inception` command prints each as a plain line on standard error.
public enum Diagnostics {
    /// The swift-log label of the library's lines.
    public static let label = "inception"

    /// A logger made at each use, so that it goes through whatever the app bootstrapped, even after the first line.
    package static var logger: Logger { Logger(label: label) }

    /// Routine work a person may wonder about (measuring the register tiles): swift-log's `.debug`, so that an app
    /// that keeps swift-log's default (`.info` and above on standard error) hears nothing of it.
    package static func debug(_ line: String) { logger.debug("\(line)") }

    /// Something the person should know, once per process (Linux refused AMX, so bf16 and int8 take another
    /// route): swift-log's `.notice`.
    package static func noticeOnce(_ line: String) {
        if noticed.withLock({ $0.insert(line).inserted }) { logger.notice("\(line)") }
    }

    private static let noticed = Locked(Set<String>())
}
