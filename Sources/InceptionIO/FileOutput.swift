import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writing a file the user named, for every file any command writes. What is at the path decides how:
/// - nothing, or a regular file: a temporary file in the same folder, flushed and renamed over the path once
///   complete, with the old file's mode (and, as root, its owner). A regular file with other hard links is rewritten
///   in place from the complete temporary copy, so that every name sees the new contents;
/// - a symbolic link: the same, onto the file it resolves to (the link stays a link);
/// - a FIFO, a character device (`/dev/null`, a terminal), `-` or the process's own streams (`/dev/stdout`,
///   `/dev/stderr`, `/dev/fd/N`, `/proc/self/fd/N`: whatever they are, a log appended to, a pipe): written straight
///   through, and every failure reported (a full device, a reader that went away);
/// - a directory, a block device or a socket: refused.
/// Temporary files left by a writer that was killed (their name carries its PID) are removed by the next writer of the
/// same path once that process is gone.
/// Failures are one line in words, never a Foundation error domain.
public enum FileOutput {
    public struct Failure: Error, Equatable, CustomStringConvertible {
        public let path: String
        public let reason: String
        public init(path: String, reason: String) { (self.path, self.reason) = (path, reason) }
        public var description: String { "cannot write \(path): \(reason)" }
    }

    /// `data` as the whole file at `url` (see the type's rules).
    public static func write(_ data: Data, to url: URL) throws(Failure) {
        try write(data, to: url.path)
    }

    /// `data` as the whole file at `path`; `-` is standard output.
    public static func write(_ data: Data, to path: String) throws(Failure) {
        let file = try OutputFile(path)
        try file.write(data)
        try file.commit()
    }

    /// The descriptor a path names when it is one of the process's own streams, written straight through like `-`:
    /// `-` and `/dev/stdout` (1), `/dev/stderr` (2), `/dev/fd/N` and `/proc/self/fd/N` (N).
    public static func ownStream(_ path: String) -> Int32? {
        switch path {
        case "-", "/dev/stdout": return 1
        case "/dev/stderr": return 2
        default:
            for prefix in ["/dev/fd/", "/proc/self/fd/", "/proc/\(getpid())/fd/"] where path.hasPrefix(prefix) {
                return Int32(path.dropFirst(prefix.count)).flatMap { $0 >= 0 ? $0 : nil }
            }
            return nil
        }
    }

    /// Whether `path` writes to standard output (where `--json` prints too).
    public static func isStandardOutput(_ path: String) -> Bool { ownStream(path) == 1 }

    /// Refuses an output that is one of the command's own input files — the same file by device and inode, whatever
    /// link or spelling names it — before any work, so that a command cannot replace what it reads.
    public static func checkNotAnInput(_ output: String, inputs: [String]) throws(Failure) {
        var target = stat()
        guard ownStream(output) == nil, stat(output, &target) == 0, target.st_mode & S_IFMT == S_IFREG else { return }
        for input in inputs {
            var info = stat()
            if stat(input, &info) == 0, info.st_dev == target.st_dev, info.st_ino == target.st_ino {
                let same = input == output ? "" : " (as \(input))"
                throw Failure(path: output, reason: "it is also an input of this command\(same); refused, so that "
                              + "the command does not replace what it reads")
            }
        }
    }

    /// Why `errno` stopped a write, in words.
    public static func reason(_ code: Int32) -> String {
        switch code {
        case ENOSPC: return "the disk or device is full"
        case EDQUOT: return "the disk quota is exceeded"
        case EPIPE: return "the reader of the pipe went away"
        case EROFS: return "the file system is read-only"
        case EACCES, EPERM: return "permission denied"
        case ENOENT: return "the folder does not exist"
        case ENOTDIR: return "a component of the path is not a folder"
        case EISDIR: return "is a directory"
        case ELOOP: return "too many levels of symbolic links"
        case ENAMETOOLONG: return "the path is too long"
        default: return String(cString: strerror(code)).lowercased()
        }
    }
}

/// One file being written (see `FileOutput` for what each kind of path gets). Nothing replaces the path before
/// `commit()`; a file dropped uncommitted leaves what was there untouched and no temporary file behind.
public final class OutputFile {
    public let path: String
    private let descriptor: Int32
    private enum Kind { case replace(temporary: String, target: String, inPlace: Bool), stream(closes: Bool) }
    private let kind: Kind
    private var finished = false
    /// Where the temporary file's name is kept for `PartialFiles`, while it exists.
    private var slot: Int?

    public init(_ path: String) throws(FileOutput.Failure) {
        self.path = path
        if let own = FileOutput.ownStream(path) {
            // The process's own stream, as it is (appended to a log, a pipe): never resolved and replaced.
            guard fcntl(own, F_GETFD) >= 0 else { throw FileOutput.Failure(path: path, reason: "no such open stream") }
            (descriptor, kind) = (own, .stream(closes: false))
            return
        }
        let target = try Self.resolved(path)
        var info = stat()
        let exists = lstat(target, &info) == 0
        switch exists ? info.st_mode & S_IFMT : S_IFREG {
        case S_IFIFO, S_IFCHR:
            let fd = open(target, O_WRONLY | O_NOCTTY | O_CLOEXEC)
            guard fd >= 0 else { throw FileOutput.Failure(path: path, reason: FileOutput.reason(errno)) }
            (descriptor, kind) = (fd, .stream(closes: true))
        case S_IFREG:
            Self.removeAbandonedPartials(of: target)
            let temporary = Self.temporaryName(for: target)
            let fd = open(temporary, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
            guard fd >= 0 else { throw FileOutput.Failure(path: path, reason: Self.openProblem(errno, target)) }
            if exists {
                _ = fchmod(fd, info.st_mode & 0o7777)
                if geteuid() == 0 { _ = fchown(fd, info.st_uid, info.st_gid) }
            }
            let inPlace = exists && info.st_nlink > 1
            (descriptor, kind) = (fd, .replace(temporary: temporary, target: target, inPlace: inPlace))
            slot = PartialFiles.register(temporary)
        case S_IFDIR: throw FileOutput.Failure(path: path, reason: "is a directory")
        case S_IFBLK: throw FileOutput.Failure(path: path, reason: "is a block device; refused")
        case S_IFSOCK: throw FileOutput.Failure(path: path, reason: "is a socket, not a file")
        default: throw FileOutput.Failure(path: path, reason: "is not a regular file")
        }
    }

    deinit {
        guard !finished else { return }
        if case let .replace(temporary, _, _) = kind { unlink(temporary) }
        PartialFiles.unregister(slot)
        if case .stream(closes: false) = kind { return }
        close(descriptor)
    }

    public func write(_ data: Data) throws(FileOutput.Failure) {
        let failure: FileOutput.Failure? = data.withUnsafeBytes { raw in
            do throws(FileOutput.Failure) { try write(raw); return nil } catch { return error }
        }
        if let failure { throw failure }
    }

    /// Every byte of `bytes`, retrying interrupted and partial writes.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(FileOutput.Failure) {
        try writeAll(bytes) { [descriptor] base, count, _ in posixWrite(descriptor, base, count) }
    }

    /// Every byte of `bytes` through `call` (a write of `count` bytes from a pointer, at an offset into `bytes`),
    /// retrying interrupted and partial writes.
    private func writeAll(_ bytes: UnsafeRawBufferPointer,
                          _ call: (UnsafeRawPointer, Int, Int) -> Int) throws(FileOutput.Failure) {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let written = call(base + done, bytes.count - done, done)
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { throw fail(written < 0 ? errno : EIO) }
            done += written
        }
    }

    /// Whether bytes can be written at any offset (`write(_:at:)`): a file, not a stream.
    public var isPositional: Bool {
        if case .replace = kind { return true }
        return false
    }

    /// Every byte of `bytes` at `offset` of the file (a file only: see `isPositional`), leaving the position of
    /// `write(_:)` where it was.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(FileOutput.Failure) {
        guard isPositional else { throw FileOutput.Failure(path: path, reason: "is a stream, written in order only") }
        try writeAll(bytes) { [descriptor] base, count, done in pwrite(descriptor, base, count, off_t(offset + done)) }
    }

    /// Flushes the bytes and puts them at the path: renamed over it, copied into it (hard links), or, for a stream,
    /// closed.
    public func commit() throws(FileOutput.Failure) {
        switch kind {
        case .stream(let closes):
            finished = true
            if closes && close(descriptor) != 0 && errno != EINTR { throw fail(errno) }
        case let .replace(temporary, target, inPlace):
            guard fsync(descriptor) == 0 else { throw fail(errno) }
            if inPlace { try copyInPlace(to: target) }
            finished = true
            close(descriptor)
            defer { PartialFiles.unregister(slot) }
            if inPlace { unlink(temporary); return }
            guard rename(temporary, target) == 0 else {
                let code = errno
                unlink(temporary)
                throw FileOutput.Failure(path: path, reason: FileOutput.reason(code))
            }
        }
    }

    /// The temporary copy's bytes written over `target`'s own (a file with other hard links keeps its inode).
    private func copyInPlace(to target: String) throws(FileOutput.Failure) {
        guard lseek(descriptor, 0, SEEK_SET) == 0 else { throw fail(errno) }
        let fd = open(target, O_WRONLY | O_TRUNC | O_CLOEXEC)
        guard fd >= 0 else { throw fail(errno) }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw fail(errno) }
            if count == 0 { break }
            var offset = 0
            while offset < count {
                let written = buffer.withUnsafeBytes { posixWrite(fd, $0.baseAddress! + offset, count - offset) }
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else { throw fail(written < 0 ? errno : EIO) }
                offset += written
            }
        }
        guard fsync(fd) == 0 else { throw fail(errno) }
    }

    private func fail(_ code: Int32) -> FileOutput.Failure {
        FileOutput.Failure(path: path, reason: FileOutput.reason(code))
    }

    /// The path a chain of symbolic links ends at (relative targets from their link's folder); the path itself
    /// when it is not a link.
    static func resolved(_ path: String) throws(FileOutput.Failure) -> String {
        var current = path
        for _ in 0..<40 {
            var info = stat()
            guard lstat(current, &info) == 0, info.st_mode & S_IFMT == S_IFLNK else { return current }
            var buffer = [UInt8](repeating: 0, count: 4097)
            let count = buffer.withUnsafeMutableBufferPointer { raw in
                raw.withMemoryRebound(to: CChar.self) { readlink(current, $0.baseAddress!, 4096) }
            }
            guard count > 0 else { throw FileOutput.Failure(path: path, reason: FileOutput.reason(errno)) }
            let link = String(decoding: buffer[0..<count], as: UTF8.self)
            current = link.hasPrefix("/") ? link : folder(of: current) + "/" + link
        }
        throw FileOutput.Failure(path: path, reason: FileOutput.reason(ELOOP))
    }

    static func folder(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// `.NAME.PID.TAG.partial`: hidden, beside the target, naming the process that writes it.
    private static func temporaryName(for target: String) -> String {
        let tag = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        return folder(of: target) + "/.\(partialStem(of: target)).\(getpid()).\(tag).partial"
    }

    private static func partialStem(of target: String) -> String {
        String((target.split(separator: "/").last.map(String.init) ?? "output").prefix(200))
    }

    /// The temporary files of earlier writers of `target` whose process is gone (a SIGKILL, the OOM killer, a
    /// crash leaves them): removed. A writer still running keeps its own.
    static func removeAbandonedPartials(of target: String) {
        let folder = folder(of: target), prefix = "." + partialStem(of: target) + "."
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
        for name in names where name.hasPrefix(prefix) && name.hasSuffix(".partial") {
            let fields = name.dropFirst(prefix.count).dropLast(".partial".count).split(separator: ".")
            guard fields.count == 2, let pid = pid_t(fields[0]), pid > 0 else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { unlink(folder + "/" + name) }
        }
    }

    /// Why the temporary file could not be made next to `target`, in words.
    private static func openProblem(_ code: Int32, _ target: String) -> String {
        let folder = folder(of: target)
        var info = stat()
        if stat(folder, &info) != 0 { return "the folder \(folder) does not exist" }
        if info.st_mode & S_IFMT != S_IFDIR { return "\(folder) is not a folder" }
        return FileOutput.reason(code)
    }
}

/// The temporary files being written, removed when the process is stopped by SIGINT, SIGTERM or SIGHUP (after
/// `removeOnSignals()`), so that an interrupted command leaves nothing behind. Names are kept in slots allocated
/// once, which is all the signal handler reads.
public enum PartialFiles {
    private static let capacity = 64
    nonisolated(unsafe) private static let slots: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> = {
        let slots = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: capacity)
        slots.initialize(repeating: nil, count: capacity)
        return slots
    }()
    private static let lock = NSLock()

    /// A line the handlers write to standard error before the process ends (set once, before any signal).
    nonisolated(unsafe) private static var lastWords: UnsafeMutablePointer<CChar>?

    /// Says `line` on standard error when a signal ends the process (a rank of an `mpirun` job that the launcher
    /// stops because another rank died).
    public static func sayOnSignal(_ line: String) {
        lock.withLock { lastWords = strdup(line + "\n") }
    }

    /// Installs the handlers: each removes the temporary files, then ends the process as the signal would have.
    public static func removeOnSignals() {
        _ = slots
        for signal in [SIGINT, SIGTERM, SIGHUP] {
            _ = Foundation.signal(signal) { number in
                for i in 0..<PartialFiles.capacity { if let name = PartialFiles.slots[i] { unlink(name) } }
                if let words = PartialFiles.lastWords { _ = posixWrite(2, words, strlen(words)) }
                _ = Foundation.signal(number, SIG_DFL)
                raise(number)
            }
        }
    }

    static func register(_ path: String) -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard let free = (0..<capacity).first(where: { slots[$0] == nil }) else { return nil }
        slots[free] = strdup(path)
        return free
    }

    static func unregister(_ slot: Int?) {
        guard let slot else { return }
        lock.lock()
        defer { lock.unlock() }
        let name = slots[slot]
        slots[slot] = nil
        free(name)
    }
}

private func posixWrite(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    Glibc.write(fd, bytes, count)
    #else
    Darwin.write(fd, bytes, count)
    #endif
}
