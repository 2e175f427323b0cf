import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The safetensors format: an 8-byte little-endian header length N, N bytes of JSON mapping each tensor name to
/// `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the data that follows the header), and the
/// data. Everything in the header is checked before any tensor is read: the length against the file, the JSON,
/// every dtype, shape and byte range, and that no two ranges overlap.
public struct SafeTensorsFile: Sendable {
    public enum DType: String, Sendable, CaseIterable {
        case F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL, F8_E4M3, F8_E5M2

        public var byteSize: Int {
            switch self {
            case .F64, .I64, .U64: return 8
            case .F32, .I32, .U32: return 4
            case .F16, .BF16, .I16, .U16: return 2
            case .I8, .U8, .BOOL, .F8_E4M3, .F8_E5M2: return 1
            }
        }
    }

    public struct Entry: Sendable, Equatable {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        /// Byte range within the data section.
        public let byteRange: Range<Int>
        public var count: Int { shape.reduce(1, *) }
    }

    /// Larger headers are refused before they are read (the format's reference implementation uses 100 MB).
    public static let maximumHeaderLength = 100_000_000

    public let entries: [String: Entry]
    public let metadata: [String: String]
    private let data: Data
    private let dataStart: Int
    /// The file is memory-mapped: pages read by `floats` are handed back to the kernel afterwards, so loading a
    /// model does not hold the whole checkpoint resident next to its packed copy.
    private var mapped = false

    /// Opens a file, memory-mapped.
    public init(contentsOf url: URL) throws {
        let data: Data
        do {
            data = try FileInput.read(url, maximumBytes: .max, mapped: true)
        } catch {
            throw SafeTensorsError.unreadable(path: url.path, reason: error.description)
        }
        try self.init(data: data)
        mapped = true
    }

    public init(data: Data) throws {
        self.data = data
        let size = data.count
        guard size >= 8 else { throw SafeTensorsError.truncatedHeader(fileSize: size) }
        let length = data.prefix(8).enumerated().reduce(UInt64(0)) {
            $0 | UInt64($1.element) << (8 * UInt64($1.offset))
        }
        guard length <= UInt64(Self.maximumHeaderLength) else {
            throw SafeTensorsError.headerTooLarge(length: length, limit: Self.maximumHeaderLength)
        }
        guard length <= UInt64(size - 8) else {
            throw SafeTensorsError.headerLengthBeyondFile(length: length, fileSize: size)
        }
        dataStart = 8 + Int(length)
        let dataSize = size - dataStart
        let header = data.subdata(in: data.startIndex + 8 ..< data.startIndex + dataStart)
        if let duplicate = Self.duplicateTopLevelKey(header) { throw SafeTensorsError.duplicateKey(name: duplicate) }
        let raw: [String: HeaderValue]
        do {
            raw = try JSONDecoder().decode([String: HeaderValue].self, from: header)
        } catch let error as SafeTensorsError {
            throw error
        } catch {
            throw SafeTensorsError.invalidJSON(reason: Self.describe(error))
        }
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in raw {
            switch value {
            case let .metadata(m) where name == "__metadata__":
                metadata = m
            case .metadata:
                throw SafeTensorsError.malformedEntry(name: name, reason: "expected {dtype, shape, data_offsets}")
            case let .tensor(dtypeName, shape, offsets):
                guard let dtype = DType(rawValue: dtypeName) else {
                    throw SafeTensorsError.unknownDType(name: name, dtype: dtypeName)
                }
                guard shape.allSatisfy({ $0 >= 0 }) else {
                    throw SafeTensorsError.malformedEntry(name: name, reason: "negative dimension in shape \(shape)")
                }
                guard offsets.count == 2, offsets[0] >= 0, offsets[0] <= offsets[1] else {
                    throw SafeTensorsError.malformedEntry(name: name,
                                                          reason: "data_offsets \(offsets) are not [begin, end]")
                }
                guard offsets[1] <= dataSize else {
                    throw SafeTensorsError.offsetsOutsideData(name: name, end: offsets[1], dataSize: dataSize)
                }
                var bytes = dtype.byteSize, overflow = false
                for d in shape where !overflow { (bytes, overflow) = bytes.multipliedReportingOverflow(by: d) }
                guard !overflow, bytes == offsets[1] - offsets[0] else {
                    throw SafeTensorsError.sizeMismatch(name: name, shape: shape, dtype: dtypeName,
                                                        byteLength: offsets[1] - offsets[0])
                }
                entries[name] = Entry(name: name, dtype: dtype, shape: shape, byteRange: offsets[0]..<offsets[1])
            }
        }
        let ordered = entries.values.sorted {
            ($0.byteRange.lowerBound, $0.byteRange.upperBound) < ($1.byteRange.lowerBound, $1.byteRange.upperBound)
        }
        for (a, b) in zip(ordered, ordered.dropFirst()) where b.byteRange.lowerBound < a.byteRange.upperBound {
            throw SafeTensorsError.overlappingTensors(first: a.name, second: b.name)
        }
        // As Python's safetensors: the tensors cover the data exactly, one after another.
        var end = 0
        for entry in ordered {
            guard entry.byteRange.lowerBound == end else {
                throw SafeTensorsError.gapInData(name: entry.name, begin: entry.byteRange.lowerBound, previousEnd: end)
            }
            end = entry.byteRange.upperBound
        }
        guard end == dataSize else { throw SafeTensorsError.trailingBytes(count: dataSize - end) }
        self.entries = entries
        self.metadata = metadata
    }

    /// The tensor's values as Float32 (F32, F16 and BF16 are converted; other dtypes are an error).
    public func floats(_ name: String) throws -> [Float] {
        guard let entry = entries[name] else { throw SafeTensorsError.missingTensor(name: name) }
        guard [.F32, .F16, .BF16].contains(entry.dtype) else {
            throw SafeTensorsError.notFloatingPoint(name: name, dtype: entry.dtype.rawValue)
        }
        let offset = dataStart + entry.byteRange.lowerBound
        return data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> [Float] in
            let base = raw.baseAddress! + offset
            defer { if mapped { releasePages(base, entry.byteRange.count) } }
            switch entry.dtype {
            case .F16:
                return (0..<entry.count).map {
                    halfToFloat(base.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))
                }
            case .BF16:
                return (0..<entry.count).map {
                    Float(bitPattern: UInt32(base.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) << 16)
                }
            default:
                return [Float](unsafeUninitializedCapacity: entry.count) { buffer, initialized in
                    let source = UnsafeRawBufferPointer(start: base, count: 4 * entry.count)
                    UnsafeMutableRawBufferPointer(buffer).copyMemory(from: source)
                    initialized = entry.count
                }
            }
        }
    }

    /// A one-byte integer tensor's values (I8 as their bit patterns, U8), refused for any other dtype.
    public func bytes(_ name: String, dtype: DType) throws -> [UInt8] {
        guard let entry = entries[name] else { throw SafeTensorsError.missingTensor(name: name) }
        guard entry.dtype == dtype, dtype.byteSize == 1 else {
            throw SafeTensorsError.wrongDType(name: name, dtype: entry.dtype.rawValue, expected: dtype.rawValue)
        }
        let offset = dataStart + entry.byteRange.lowerBound
        return data.withUnsafeBytes { raw in
            Array(UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + entry.count)]))
        }
    }

    /// A tensor to write: its values' bytes, little-endian, in `dtype`.
    public struct Tensor {
        public var name: String, shape: [Int], dtype: DType, bytes: Data

        public init(name: String, shape: [Int], dtype: DType, bytes: Data) {
            precondition(shape.reduce(1, *) * dtype.byteSize == bytes.count,
                         "\(name): shape \(shape) vs \(bytes.count) bytes")
            (self.name, self.shape, self.dtype, self.bytes) = (name, shape, dtype, bytes)
        }

        public init(name: String, shape: [Int], values: [Float]) {
            self.init(name: name, shape: shape, dtype: .F32, bytes: values.withUnsafeBytes { Data($0) })
        }
    }

    /// Writes F32 tensors, atomically (a temporary file in the same folder, renamed when complete).
    public static func write(_ tensors: [(name: String, shape: [Int], values: [Float])],
                             metadata: [String: String] = [:], to url: URL) throws {
        try write(tensors.map { Tensor(name: $0.name, shape: $0.shape, values: $0.values) }, metadata: metadata,
                  to: url)
    }

    /// Writes tensors of any dtype, atomically.
    public static func write(_ tensors: [Tensor], metadata: [String: String] = [:], to url: URL) throws {
        try FileOutput.write(try serialized(tensors, metadata: metadata), to: url)
    }

    /// The bytes of a safetensors file holding `tensors`.
    public static func serialized(_ tensors: [Tensor], metadata: [String: String] = [:]) throws -> Data {
        precondition(Set(tensors.map(\.name)).count == tensors.count, "two tensors of one name")
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for t in tensors {
            header[t.name] = ["dtype": t.dtype.rawValue, "shape": t.shape,
                              "data_offsets": [offset, offset + t.bytes.count]]
            offset += t.bytes.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for t in tensors { out.append(t.bytes) }
        return out
    }

    /// The first key that the header's top-level object holds twice (JSONDecoder keeps one silently), if any.
    static func duplicateTopLevelKey(_ header: Data) -> String? {
        var seen = Set<String>(), depth = 0, i = header.startIndex
        var lastString: Range<Int>? = nil
        while i < header.endIndex {
            let byte = header[i]
            switch byte {
            case UInt8(ascii: "\""):
                let start = i
                i += 1
                while i < header.endIndex && header[i] != UInt8(ascii: "\"") {
                    i += header[i] == UInt8(ascii: "\\") ? 2 : 1  // an escape takes the next byte with it
                }
                guard i < header.endIndex else { return nil }  // unterminated: the JSON decoder says so
                lastString = start..<(i + 1)
            case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1; lastString = nil
            case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1; lastString = nil
            case UInt8(ascii: ":"):
                if depth == 1, let key = lastString {
                    // Escapes spell one key several ways: compare decoded keys.
                    let raw = header[key]
                    let name = raw.contains(UInt8(ascii: "\\")) ? (try? JSONDecoder().decode(String.self, from: raw))
                        : String(decoding: raw.dropFirst().dropLast(), as: UTF8.self)
                    if let name, !seen.insert(name).inserted { return name }
                }
                lastString = nil
            case UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"): break
            default: lastString = nil
            }
            i += 1
        }
        return nil
    }

    /// A decoding failure in the project's words: where in the header, and what is wrong there.
    private static func describe(_ error: Error) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let text = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? "'\($0.stringValue.prefix(60))'" }
                .joined(separator: " ")
            return text.isEmpty ? "the header" : "entry \(text)"
        }
        switch error {
        case DecodingError.dataCorrupted: return "the header is not a JSON object of entries"
        case let DecodingError.keyNotFound(key, context):
            return "\(path(context)) has no '\(key.stringValue)'"
        case let DecodingError.typeMismatch(type, context):
            let expected = type == String.self ? "a string" : type == Int.self ? "an integer"
                : "of the expected type (an object of dtype, shape and data_offsets, or string metadata)"
            return "\(path(context)) is not \(expected)"
        case let DecodingError.valueNotFound(_, context): return "\(path(context)) is null"
        default: return "the header could not be decoded"
        }
    }

    private enum HeaderValue: Decodable {
        case tensor(dtype: String, shape: [Int], offsets: [Int])
        case metadata([String: String])

        private enum Keys: String, CodingKey { case dtype, shape, data_offsets }

        init(from decoder: Decoder) throws {
            if let m = try? decoder.singleValueContainer().decode([String: String].self) {
                self = .metadata(m)
                return
            }
            let c = try decoder.container(keyedBy: Keys.self)
            self = .tensor(dtype: try c.decode(String.self, forKey: .dtype),
                           shape: try c.decode([Int].self, forKey: .shape),
                           offsets: try c.decode([Int].self, forKey: .data_offsets))
        }
    }
}

/// Drops the whole pages inside a read-only file mapping from this process (they are re-read from the page cache
/// if touched again), which keeps resident memory to what the program itself allocated.
private func releasePages(_ start: UnsafeRawPointer, _ count: Int) {
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let first = (Int(bitPattern: start) + page - 1) / page * page
    let end = (Int(bitPattern: start) + count) / page * page
    if end > first { _ = madvise(UnsafeMutableRawPointer(bitPattern: first), end - first, MADV_DONTNEED) }
}

/// IEEE 754 binary16 to Float, by bits (Float16 is unavailable on some platforms Swift targets).
func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h >> 15) << 31, exponent = UInt32(h >> 10) & 0x1F, mantissa = UInt32(h) & 0x3FF
    if exponent == 0 {
        return Float(bitPattern: sign) + (sign == 0 ? 1 : -1) * Float(mantissa) * 0x1p-24  // zero or subnormal
    }
    if exponent == 31 { return Float(bitPattern: sign | 0x7F80_0000 | mantissa << 13) }  // inf or NaN
    return Float(bitPattern: sign | (exponent + 112) << 23 | mantissa << 13)
}

public enum SafeTensorsError: Error, Equatable, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case truncatedHeader(fileSize: Int)
    case headerTooLarge(length: UInt64, limit: Int)
    case headerLengthBeyondFile(length: UInt64, fileSize: Int)
    case invalidJSON(reason: String)
    case malformedEntry(name: String, reason: String)
    case unknownDType(name: String, dtype: String)
    case offsetsOutsideData(name: String, end: Int, dataSize: Int)
    case sizeMismatch(name: String, shape: [Int], dtype: String, byteLength: Int)
    case overlappingTensors(first: String, second: String)
    case duplicateKey(name: String)
    case gapInData(name: String, begin: Int, previousEnd: Int)
    case trailingBytes(count: Int)
    case missingTensor(name: String)
    case notFloatingPoint(name: String, dtype: String)
    case wrongDType(name: String, dtype: String, expected: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): return "cannot read safetensors file \(path): \(reason)"
        case let .truncatedHeader(size):
            return "safetensors file is \(size) bytes, too short for the 8-byte header length"
        case let .headerTooLarge(length, limit):
            return "safetensors header length \(length) exceeds the limit of \(limit) bytes"
        case let .headerLengthBeyondFile(length, size):
            return "safetensors header length \(length) runs past the end of the \(size)-byte file"
        case let .invalidJSON(reason): return "safetensors header is not valid JSON: \(reason)"
        case let .malformedEntry(name, reason): return "safetensors entry '\(name)' is malformed: \(reason)"
        case let .unknownDType(name, dtype): return "safetensors tensor '\(name)' has unknown dtype '\(dtype)'"
        case let .offsetsOutsideData(name, end, dataSize):
            return "safetensors tensor '\(name)' ends at byte \(end), past the \(dataSize) bytes of data"
        case let .sizeMismatch(name, shape, dtype, length):
            return "safetensors tensor '\(name)' of shape \(shape) and dtype \(dtype) cannot occupy \(length) bytes"
        case let .overlappingTensors(a, b): return "safetensors tensors '\(a)' and '\(b)' overlap"
        case let .duplicateKey(name): return "safetensors header names '\(name)' twice"
        case let .gapInData(name, begin, end):
            return "safetensors tensor '\(name)' starts at byte \(begin) of the data, "
                + "not where the previous one ends (\(end))"
        case let .trailingBytes(count): return "safetensors file has \(count) bytes after its last tensor"
        case let .missingTensor(name): return "safetensors file has no tensor '\(name)'"
        case let .notFloatingPoint(name, dtype):
            return "safetensors tensor '\(name)' has dtype \(dtype); only F32, F16 and BF16 can be loaded"
        case let .wrongDType(name, dtype, expected):
            return "safetensors tensor '\(name)' has dtype \(dtype), expected \(expected)"
        }
    }
}
