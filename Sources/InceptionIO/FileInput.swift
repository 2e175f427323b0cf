import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reading a file someone named on the command line or in a request: only regular files, never more than a stated
/// number of bytes, and a reason a person understands when it cannot be read ("is a directory", "is a FIFO (named
/// pipe)", "is 3 GB, over the limit") — never a Foundation error domain. The type is checked with `stat` before the
/// file is opened, so a FIFO does not block and `/dev/zero` is not read forever.
public enum FileInput {
    /// Why a file cannot be read, in words for its one-line error.
    public struct Problem: Error, Equatable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// The whole file, memory-mapped when `mapped` (large checkpoints), else read.
    public static func read(_ url: URL, maximumBytes: Int, mapped: Bool = false) throws(Problem) -> Data {
        let size = try regularFileSize(url)
        guard size <= maximumBytes else {
            throw Problem("is \(size) bytes, over the limit of \(maximumBytes) bytes")
        }
        // Foundation reads an empty file through a 4 KB buffer it never frees (found by fuzzing the checkpoint
        // reader); there is nothing to read.
        if size == 0 { return Data() }
        do {
            return try Data(contentsOf: url, options: mapped ? .alwaysMapped : [])
        } catch {
            // Only a race (the file changed between stat and read) or an I/O error gets here.
            throw Problem(errno != 0 ? String(cString: strerror(errno)).lowercased() : "it could not be read")
        }
    }

    /// The size of a regular file, or what the path is instead.
    public static func regularFileSize(_ url: URL) throws(Problem) -> Int {
        var info = stat()
        guard stat(url.path, &info) == 0 else {
            switch errno {
            case ENOENT: throw Problem("no such file")
            case EACCES: throw Problem("permission denied")
            case ENOTDIR: throw Problem("a component of the path is not a directory")
            default: throw Problem(String(cString: strerror(errno)).lowercased())
            }
        }
        switch info.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw Problem("is a directory, not a file")
        case S_IFIFO: throw Problem("is a FIFO (named pipe), not a regular file")
        case S_IFCHR: throw Problem("is a character device, not a regular file")
        case S_IFBLK: throw Problem("is a block device, not a regular file")
        case S_IFSOCK: throw Problem("is a socket, not a regular file")
        default: throw Problem("is not a regular file")
        }
        guard access(url.path, R_OK) == 0 else { throw Problem("permission denied") }
        return Int(info.st_size)
    }

    /// Why a file cannot be written at `url`, in words: the folder is missing, is not a folder, or refuses writing.
    public static func writeProblem(_ url: URL) -> Problem {
        let folder = url.deletingLastPathComponent()
        var info = stat()
        if stat(folder.path, &info) != 0 { return Problem("the folder \(folder.path) does not exist") }
        if info.st_mode & S_IFMT != S_IFDIR { return Problem("\(folder.path) is not a folder") }
        if stat(url.path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR { return Problem("is a directory") }
        if access(folder.path, W_OK) != 0 { return Problem("permission denied") }
        return Problem("the disk refused the write (full, or read-only)")
    }
}
