import Foundation

/// NumPy's .npy format, float32 little-endian in C order only (what PyTorch, timm and ONNX tools exchange).
/// Reading checks the magic, the version, the header's length and fields, and that the data is exactly
/// as long as the shape says, before anything is trusted.
public enum NPY {
    public static func read(contentsOf url: URL) throws -> (shape: [Int], values: [Float]) {
        let reader = try Reader(contentsOf: url)
        return (reader.shape, try reader.allValues)
    }

    public static func read(_ data: Data) throws -> (shape: [Int], values: [Float]) {
        let reader = try Reader(data)
        return (reader.shape, try reader.allValues)
    }

    /// An .npy file checked, its values read a range of rows (the first dimension) at a time, so that a file of any
    /// size is worked through in bounded memory. A file is read with `pread`, not mapped: another process that
    /// shrinks it meanwhile (`np.save` onto the same name, `truncate`) makes a read fail in one line
    /// (`NPYError.changed`), where a mapped page past the new end would end the process with SIGBUS.
    public struct Reader {
        public let shape: [Int]
        private let source: Source
        private let payload: Int

        private enum Source {
            case memory(Data)
            case file(ReadOnlyFile)
        }

        public init(contentsOf url: URL) throws {
            let file: ReadOnlyFile, size: Int
            do {
                size = try FileInput.regularFileSize(url)
                file = try ReadOnlyFile(url.path)
            } catch {
                throw NPYError.unreadable(path: url.path, reason: error.description)
            }
            let head = try file.bytes(at: 0, count: min(size, 12 + (1 << 16)))
            (shape, payload) = try NPY.header(head, totalBytes: size)
            source = .file(file)
        }

        public init(_ data: Data) throws {
            (shape, payload) = try NPY.header(data, totalBytes: data.count)
            source = .memory(data)
        }

        /// Values in one row (1 for a 0-d array).
        public var rowCount: Int { shape.dropFirst().reduce(1, *) }

        /// Every value, in C order.
        public var allValues: [Float] { get throws { try values(shape.first.map { 0..<$0 } ?? 0..<1) } }

        /// The values of `rows` (of the first dimension; `0..<1` for a 0-d array), in C order.
        public func values(_ rows: Range<Int>) throws -> [Float] {
            let (start, count) = (rows.lowerBound * rowCount, rows.count * rowCount)
            let bytes: Data
            switch source {
            case let .memory(data): bytes = data.subdata(in: data.startIndex + payload + 4 * start ..< data.startIndex
                                                          + payload + 4 * (start + count))
            case let .file(file): bytes = try file.bytes(at: payload + 4 * start, count: 4 * count)
            }
            return bytes.withUnsafeBytes { raw in
                (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0,
                                                                                           as: UInt32.self))) }
            }
        }
    }

    /// A file open for reading by offset; closed when the last reader lets it go.
    final class ReadOnlyFile {
        let path: String
        private let descriptor: Int32

        init(_ path: String) throws(FileInput.Problem) {
            descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { throw FileInput.Problem(String(cString: strerror(errno)).lowercased()) }
            self.path = path
        }

        deinit { close(descriptor) }

        /// `count` bytes from `offset`; a file that ends before them changed after its size was read.
        func bytes(at offset: Int, count: Int) throws -> Data {
            var data = Data(count: count)
            let read = data.withUnsafeMutableBytes { raw -> Int in
                var done = 0
                while done < count {
                    let n = pread(descriptor, raw.baseAddress! + done, count - done, off_t(offset + done))
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else { break }
                    done += n
                }
                return done
            }
            guard read == count else { throw NPYError.changed(path: path) }
            return data
        }
    }

    /// The shape and where the values start, after every check of the header and the data's length.
    /// `data` holds at least the header (the file's start); the file is `totalBytes` long.
    static func header(_ data: Data, totalBytes: Int) throws -> (shape: [Int], payload: Int) {
        let bytes = [UInt8](data.prefix(12))
        guard bytes.count >= 10, bytes[0..<6] == [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59] else { throw NPYError.badMagic }
        let major = bytes[6]
        let headerStart: Int, headerLength: Int
        switch major {
        case 1:
            headerStart = 10
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        case 2, 3:
            guard bytes.count >= 12 else { throw NPYError.truncated(expected: 12, actual: bytes.count) }
            headerStart = 12
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
        default:
            throw NPYError.unsupportedVersion(Int(major))
        }
        // NumPy itself refuses headers over 10,000 bytes unless told otherwise.
        guard headerLength <= 1 << 16 else { throw NPYError.badHeader("it claims \(headerLength) bytes") }
        guard data.count >= headerStart + headerLength else {
            throw NPYError.truncated(expected: headerStart + headerLength, actual: data.count)
        }
        let start = data.startIndex + headerStart
        let encoding: String.Encoding = major == 3 ? .utf8 : .isoLatin1
        guard let header = String(data: data.subdata(in: start ..< start + headerLength), encoding: encoding) else {
            throw NPYError.badHeader("not text")
        }
        let fields = try parseHeader(header)
        guard fields.descr == "<f4" || (fields.descr == "=f4" && Int(littleEndian: 1) == 1) else {
            throw NPYError.unsupportedDType(fields.descr)
        }
        guard !fields.fortranOrder else { throw NPYError.fortranOrder }
        var count = 1, overflow = false
        for d in fields.shape where !overflow { (count, overflow) = count.multipliedReportingOverflow(by: d) }
        let payload = totalBytes - headerStart - headerLength
        // A count past Int.max / 4 has no byte length either (found by the npy fuzz target: 4 · count trapped).
        let fits = !overflow && count <= Int.max / 4
        guard fits, payload == 4 * count else {
            throw NPYError.lengthMismatch(shape: fields.shape, expectedBytes: fits ? 4 * count : -1,
                                          actualBytes: payload)
        }
        return (fields.shape, headerStart + headerLength)
    }

    /// Writes float32 C-order data, version 1.0, through `OutputFile` (atomically for a regular file).
    public static func write(shape: [Int], values: [Float], to url: URL) throws {
        let writer = try Writer(shape: shape, to: url.path)
        try writer.append(values)
        try writer.finish()
    }

    /// An .npy file written as its rows are computed: the header (the whole shape, known first), then the values in
    /// order, then `finish()`; memory holds only what each `append` is given.
    public final class Writer {
        public let shape: [Int]
        private let file: OutputFile
        private var written = 0, total: Int
        private var headerBytes = 0

        public init(shape: [Int], to path: String) throws {
            (self.shape, total) = (shape, shape.reduce(1, *))
            do { file = try OutputFile(path) } catch { throw NPYError.unwritable(path: path, reason: error.reason) }
            let dims = shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? "," : "")
            var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(dims)), }"
            while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
            header += "\n"
            var out = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0])
            out.append(contentsOf: [UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)])
            out.append(contentsOf: Array(header.utf8))
            headerBytes = out.count
            try write(out)
        }

        /// Whether `write(_:atRow:)` can place rows anywhere (a file, not a stream).
        public var isPositional: Bool { file.isPositional }

        /// Whole rows (along the first dimension) from `row` on, wherever they fall in the file (`isPositional`
        /// only); every row once, in any order, then `finish()`. Not mixed with `append`.
        public func write(_ values: [Float], atRow row: Int) throws {
            let rowCount = shape.dropFirst().reduce(1, *)
            precondition(values.count % max(rowCount, 1) == 0 && row * rowCount + values.count <= total,
                         "rows \(row)... do not fit shape \(shape)")
            written += values.count
            let offset = headerBytes + 4 * row * rowCount
            let failure: FileOutput.Failure? = values.withUnsafeBytes { raw in
                do throws(FileOutput.Failure) { try file.write(raw, at: offset); return nil } catch { return error }
            }
            if let failure { throw NPYError.unwritable(path: file.path, reason: failure.reason) }
        }

        /// The next values in C order.
        public func append(_ values: [Float]) throws {
            precondition(written + values.count <= total, "more values than shape \(shape) holds")
            written += values.count
            try write(values.withUnsafeBytes { Data($0) })
        }

        /// Puts the file in place once every value of the shape was appended.
        public func finish() throws {
            precondition(written == total, "shape \(shape) needs \(total) values, \(written) were written")
            do { try file.commit() } catch { throw NPYError.unwritable(path: file.path, reason: error.reason) }
        }

        private func write(_ data: Data) throws {
            do { try file.write(data) } catch { throw NPYError.unwritable(path: file.path, reason: error.reason) }
        }
    }

    /// Parses `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` — the dict literal NumPy writes.
    static func parseHeader(_ text: String) throws -> (descr: String, fortranOrder: Bool, shape: [Int]) {
        func value(of key: String) throws -> Substring {
            guard let k = text.range(of: "'\(key)'"),
                  let colon = text[k.upperBound...].firstIndex(of: ":") else { throw NPYError.badHeader("no '\(key)'") }
            return text[text.index(after: colon)...].drop { $0 == " " }
        }
        let d = try value(of: "descr")
        guard d.first == "'", let close = d.dropFirst().firstIndex(of: "'") else {
            throw NPYError.badHeader("descr is not a string")
        }
        let descr = String(d[d.index(after: d.startIndex)..<close])
        let f = try value(of: "fortran_order")
        let fortran: Bool
        if f.hasPrefix("False") { fortran = false } else if f.hasPrefix("True") { fortran = true } else {
            throw NPYError.badHeader("fortran_order is not True or False")
        }
        let s = try value(of: "shape")
        guard s.first == "(", let end = s.firstIndex(of: ")") else { throw NPYError.badHeader("shape is not a tuple") }
        var shape: [Int] = []
        for part in s[s.index(after: s.startIndex)..<end].split(separator: ",") {
            let t = part.trimmingCharacters(in: .whitespaces)
            if t.isEmpty { continue }
            guard let dim = Int(t.hasSuffix("L") ? String(t.dropLast()) : t), dim >= 0 else {
                throw NPYError.badHeader("shape entry '\(t.prefix(20))' is not a non-negative integer")
            }
            shape.append(dim)
        }
        return (descr, fortran, shape)
    }
}

public enum NPYError: Error, Equatable, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case unwritable(path: String, reason: String)
    case badMagic
    case unsupportedVersion(Int)
    case truncated(expected: Int, actual: Int)
    case badHeader(String)
    case unsupportedDType(String)
    case fortranOrder
    case lengthMismatch(shape: [Int], expectedBytes: Int, actualBytes: Int)
    /// The file became shorter while it was read (another process rewrote or truncated it).
    case changed(path: String)

    public var description: String {
        switch self {
        case let .changed(path): return "npy file \(path) changed while it was read: it is shorter than its header says"
        case let .unreadable(path, reason): return "cannot read npy file \(path): \(reason)"
        case let .unwritable(path, reason): return "cannot write npy file \(path): \(reason)"
        case .badMagic: return "not an npy file: the magic string \\x93NUMPY is missing"
        case let .unsupportedVersion(v): return "npy format version \(v) is not supported (1, 2 and 3 are)"
        case let .truncated(expected, actual):
            return "npy file is truncated: its header needs \(expected) bytes, the file has \(actual)"
        case let .badHeader(reason): return "npy header is malformed: \(reason)"
        case let .unsupportedDType(d):
            return "npy dtype '\(d.prefix(40))' is not supported: only little-endian float32 ('<f4') is"
        case .fortranOrder: return "npy array is in Fortran order; only C order is supported"
        case let .lengthMismatch(shape, expected, actual):
            let needed = expected < 0 ? "more than Int.max" : String(expected)
            return "npy data is \(actual) bytes but shape \(quotedShape(shape)) of float32 needs \(needed)"
        }
    }
}

/// A shape as text for a message: its start only when it is long (a file may claim thousands of dimensions).
public func quotedShape(_ shape: [Int]) -> String {
    let text = "\(shape)"
    return text.count <= 80 ? text : "\(text.prefix(60))… (\(shape.count) dimensions)"
}
