import Foundation
import Inception
import InceptionEngine

/// The command line's one progress bar: a line on standard error redrawn in place, at most ten times a second, and
/// drawn only when standard error is a terminal (a log file gets none of it). Used for downloads, evaluation and
/// training.
final class ProgressBar: @unchecked Sendable {
    private let lock = NSLock()
    private let visible: Bool
    private var lastDrawn: UInt64 = 0
    private var drawn = false

    init(visible: Bool = isatty(2) == 1) { self.visible = visible }

    /// Draws `prefix [#####.....] detail` for `done` of `total` (without a total, no bar); `done == total` is always
    /// drawn, and ends the line.
    func show(_ prefix: String, _ done: Int, of total: Int?, detail: String = "") {
        guard visible else { return }
        lock.withLock {
            let now = DispatchTime.now().uptimeNanoseconds
            let complete = total.map { done >= $0 } ?? false
            if !complete && now - lastDrawn < 100_000_000 { return }
            lastDrawn = now
            var line = "\r" + prefix
            if let total, total > 0 {
                let filled = min(30, 30 * done / total)
                line += " [" + String(repeating: "#", count: filled) + String(repeating: ".", count: 30 - filled) + "]"
            }
            line += " " + detail
            FileHandle.standardError.write(Data(line.utf8))
            drawn = !complete
            if complete { FileHandle.standardError.write(Data("\n".utf8)) }
        }
    }

    /// Ends the line if a bar is showing (before other output to standard error, or at the end of a job).
    func finish() {
        lock.withLock {
            if drawn { FileHandle.standardError.write(Data("\n".utf8)) }
            drawn = false
        }
    }
}

extension ProgressBar {
    /// A duration as a person reads it: 42s, 3m05s, 1h12m.
    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let s = Int(seconds.rounded())
        if s < 60 { return "\(s)s" }
        if s < 3600 { return String(format: "%dm%02ds", s / 60, s % 60) }
        return String(format: "%dh%02dm", s / 3600, s % 3600 / 60)
    }
}

extension HubClient {
    /// A Hub client that shows each download on a progress bar.
    static func withProgressBar() -> HubClient {
        var client = HubClient()
        let bar = ProgressBar()
        let start = Locked<[String: UInt64]>([:])
        client.progress = { p in
            let now = DispatchTime.now().uptimeNanoseconds
            let began = start.withLock { $0[p.label, default: now] }
            start.withLock { $0[p.label] = began }
            let seconds = Double(now - began) / 1e9
            var detail = String(format: "%.1f", Double(p.received) / 1e6)
            if let total = p.total { detail += String(format: " / %.1f", Double(total) / 1e6) }
            detail += String(format: " MB, %.1f MB/s", seconds > 0 ? Double(p.received) / seconds / 1e6 : 0)
            bar.show(p.label, p.received, of: p.total, detail: detail)
            if p.finished { bar.finish() }
        }
        return client
    }
}
