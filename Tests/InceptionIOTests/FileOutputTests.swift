import Foundation
import InceptionIO
import InceptionTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The one output writer (issue #35): what is at the path decides how it is written, and nothing is replaced
/// before the write is complete.
struct FileOutputTests {
    static func scratch() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("output-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    static func info(_ path: String) -> stat {
        var info = stat()
        _ = lstat(path, &info)
        return info
    }

    static func leftovers(_ dir: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".partial") }
    }

    @Test func aRegularFileIsReplacedKeepingItsMode() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/out.bin"
        try FileOutput.write(Data("new".utf8), to: path)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data("new".utf8))
        #expect(chmod(path, 0o600) == 0)
        try FileOutput.write(Data("newer".utf8), to: path)
        #expect(Self.info(path).st_mode & 0o7777 == 0o600)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data("newer".utf8))
        #expect(try Self.leftovers(dir).isEmpty)
    }

    @Test func aSymbolicLinkStaysALinkAndItsTargetIsWritten() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("old".utf8).write(to: URL(fileURLWithPath: dir + "/target"))
        #expect(symlink("target", dir + "/link") == 0)
        try FileOutput.write(Data("through the link".utf8), to: dir + "/link")
        #expect(Self.info(dir + "/link").st_mode & S_IFMT == S_IFLNK)
        #expect(try String(contentsOfFile: dir + "/target", encoding: .utf8) == "through the link")
        // A dangling link: its target is created.
        #expect(symlink("absent", dir + "/dangling") == 0)
        try FileOutput.write(Data("made".utf8), to: dir + "/dangling")
        #expect(try String(contentsOfFile: dir + "/absent", encoding: .utf8) == "made")
        #expect(Self.info(dir + "/dangling").st_mode & S_IFMT == S_IFLNK)
    }

    @Test func aHardLinkedFileKeepsItsInode() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("old".utf8).write(to: URL(fileURLWithPath: dir + "/a"))
        #expect(link(dir + "/a", dir + "/b") == 0)
        try FileOutput.write(Data("both names".utf8), to: dir + "/b")
        #expect(Self.info(dir + "/a").st_ino == Self.info(dir + "/b").st_ino)
        #expect(try String(contentsOfFile: dir + "/a", encoding: .utf8) == "both names")
        #expect(try Self.leftovers(dir).isEmpty)
    }

    @Test func aFIFOIsWrittenStraightThroughToItsReader() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fifo = dir + "/pipe"
        #expect(mkfifo(fifo, 0o600) == 0)
        let received = readFIFO(fifo)
        let payload = Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0) })
        try FileOutput.write(payload, to: fifo)
        #expect(received() == payload)
        #expect(Self.info(fifo).st_mode & S_IFMT == S_IFIFO)
    }

    @Test func aFullDeviceAndAFolderAreReportedInWords() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: FileOutput.Failure(path: "/dev/full", reason: "the disk or device is full")) {
            try FileOutput.write(Data(count: 10), to: "/dev/full")
        }
        #expect(Self.info("/dev/full").st_mode & S_IFMT == S_IFCHR)
        #expect(throws: FileOutput.Failure(path: dir, reason: "is a directory")) {
            try FileOutput.write(Data(count: 10), to: dir)
        }
        #expect(throws: FileOutput.Failure(path: dir + "/no/x", reason: "the folder \(dir)/no does not exist")) {
            try FileOutput.write(Data(count: 10), to: dir + "/no/x")
        }
        try FileOutput.write(Data(count: 10), to: "/dev/null")
        #expect(Self.info("/dev/null").st_mode & S_IFMT == S_IFCHR)
    }

    /// A device node made here (as root) stays a device; a file that is not committed leaves the old one and no
    /// temporary file.
    @Test func aDeviceStaysADeviceAndAnAbandonedWriteChangesNothing() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        if geteuid() == 0 {
            let node = dir + "/null"
            #expect(mknod(node, S_IFCHR | 0o666, dev_t(1 << 8 | 3)) == 0)
            try FileOutput.write(Data(count: 1000), to: node)
            #expect(Self.info(node).st_mode & S_IFMT == S_IFCHR)
        }
        try Data("kept".utf8).write(to: URL(fileURLWithPath: dir + "/kept"))
        do {
            let file = try OutputFile(dir + "/kept")
            try file.write(Data("half".utf8))
        }
        #expect(try String(contentsOfFile: dir + "/kept", encoding: .utf8) == "kept")
        #expect(try Self.leftovers(dir).isEmpty)
    }

    @Test func anOutputThatIsAnInputIsRefused() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("in".utf8).write(to: URL(fileURLWithPath: dir + "/in"))
        #expect(symlink(dir + "/in", dir + "/alias") == 0)
        #expect(throws: FileOutput.Failure.self) { try FileOutput.checkNotAnInput(dir + "/in", inputs: [dir + "/in"]) }
        #expect(throws: FileOutput.Failure.self) {
            try FileOutput.checkNotAnInput(dir + "/alias", inputs: [dir + "/./in"])
        }
        try FileOutput.checkNotAnInput(dir + "/other", inputs: [dir + "/in"])
        try FileOutput.checkNotAnInput("-", inputs: [dir + "/in"])
    }
}

/// The npy file streamed both ways: a header with the whole shape, then rows as they come; and read a few rows at
/// a time from the mapped file.
struct NPYStreamingTests {
    @Test func rowsWrittenInPiecesReadBackInPieces() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("rows-\(UUID()).npy").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let values = (0..<5 * 6).map { Float($0) * 0.5 - 3 }
        let writer = try NPY.Writer(shape: [5, 2, 3], to: path)
        try writer.append(Array(values[0..<12]))
        try writer.append(Array(values[12...]))
        try writer.finish()
        let whole = try NPY.read(contentsOf: URL(fileURLWithPath: path))
        #expect(whole.shape == [5, 2, 3] && whole.values == values)
        let reader = try NPY.Reader(contentsOf: URL(fileURLWithPath: path))
        #expect(try reader.values(3..<5) == Array(values[18...]))
    }

    /// One dimension past Int.max / 4 elements: its byte length overflows, so it is reported as more than any
    /// file (this trapped, found by the npy fuzz target; the input is in Fuzz/corpus/npy).
    @Test func aShapeWhoseByteLengthOverflowsIsRefused() throws {
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2444444444444444448,), }"
        header += String(repeating: " ", count: (64 - (10 + header.utf8.count + 1) % 64) % 64) + "\n"
        var data = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, UInt8(header.utf8.count), 0])
        data.append(contentsOf: Array(header.utf8) + [0, 0, 0, 0])
        #expect(throws: NPYError.lengthMismatch(shape: [2_444_444_444_444_444_448], expectedBytes: -1,
                                                actualBytes: 4)) { try NPY.read(data) }
    }

    @Test func aLongShapeIsQuotedByItsStart() throws {
        let dims = Array(repeating: "2", count: 20_000).joined(separator: ", ")
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(dims)), }"
        header += String(repeating: " ", count: (64 - (12 + header.utf8.count + 1) % 64) % 64) + "\n"
        var data = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 2, 0])
        withUnsafeBytes(of: UInt32(header.utf8.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: Array(header.utf8))
        #expect { try NPY.read(data) } throws: { "\($0)".count < 200 }
    }
}

/// Pickles that wrap themselves or nest without end are refused in one line (issue #35); every dict and list is
/// emptied afterwards, so a cycle is not leaked.
struct PickleNestingTests {
    /// `{'model': <itself>}` as protocol 2 writes it: the dict is memoised, then fetched back as its own value.
    @Test(arguments: ["model", "state_dict"]) func aDictThatWrapsItselfIsRefused(key: String) throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cycle-\(UUID()).pt")
        defer { try? FileManager.default.removeItem(at: path) }
        var pickle: [UInt8] = [0x80, 0x02, 0x7D, 0x71, 0x00, 0x58] + withUnsafeBytes(of: UInt32(key.utf8.count)
            .littleEndian, Array.init) + Array(key.utf8)
        pickle += [0x68, 0x00, 0x73, 0x2E]  // BINGET 0, SETITEM, STOP
        try Data(legacy(pickle)).write(to: path)
        #expect { try PyTorchCheckpoint(contentsOf: path) } throws: {
            "\($0)" == "\(path.path): PyTorch checkpoint is malformed: a state_dict or model entry that contains itself"
        }
    }

    @Test func wrappersAndTuplesNestedTooDeeplyAreRefused() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("deep-\(UUID()).pt")
        defer { try? FileManager.default.removeItem(at: path) }
        // 100 000 dicts, each {'model': next}: EMPTY_DICT, MARK, 'model', … then SETITEMS closing each.
        let depth = 100_000
        var pickle: [UInt8] = [0x80, 0x02]
        for _ in 0..<depth { pickle += [0x7D, 0x28, 0x8C, 0x05] + Array("model".utf8) }
        pickle += [0x7D] + Array(repeating: 0x75, count: depth) + [0x2E]
        try Data(legacy(pickle)).write(to: path)
        #expect { try PyTorchCheckpoint(contentsOf: path) } throws: {
            "\($0)".hasSuffix("state_dict or model wrappers nested over 1000 deep")
        }
        let tuples: [UInt8] = [0x80, 0x02, 0x4E] + Array(repeating: 0x85, count: depth) + [0x2E]
        try Data(legacy(tuples)).write(to: path)
        #expect { try PyTorchCheckpoint(contentsOf: path) } throws: {
            "\($0)".hasSuffix("tuples nested over 1000 deep")
        }
    }

    /// PyTorch's legacy stream around `object`: magic number, protocol version, system info, the object, no keys.
    func legacy(_ object: [UInt8]) -> [UInt8] {
        let magic: [UInt8] = [0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19, 0x2E]
        let version: [UInt8] = [0x80, 0x02, 0x4D, 0xE9, 0x03, 0x2E]
        let system: [UInt8] = [0x80, 0x02, 0x7D, 0x2E]
        return magic + version + system + object + [0x80, 0x02, 0x5D, 0x2E]
    }
}
