import Foundation
import InceptionIO
import Testing

/// Builds a safetensors byte image from a header object and a data section, without going through the
/// writer, so that malformed files can be made on purpose.
func safetensorsBytes(_ header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) -> Data {
    let json = Array(header.utf8)
    var out = Data()
    withUnsafeBytes(of: (declaredLength ?? UInt64(json.count)).littleEndian) { out.append(contentsOf: $0) }
    out.append(contentsOf: json)
    out.append(contentsOf: data)
    return out
}

struct SafeTensorsTests {
    @Test func roundTripsF32WithMetadata() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("rt-\(UUID()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensorsFile.write([("a.weight", [2, 3], [1, 2, 3, 4, 5, 6]), ("b", [1], [-0.5])],
                                  metadata: ["format": "pt"], to: url)
        let file = try SafeTensorsFile(contentsOf: url)
        #expect(file.metadata == ["format": "pt"])
        #expect(file.entries["a.weight"]?.shape == [2, 3])
        #expect(try file.floats("a.weight") == [1, 2, 3, 4, 5, 6])
        #expect(try file.floats("b") == [-0.5])
    }

    @Test func convertsF16AndBF16() throws {
        // 1.0, -2.0, 0.5, 65504 in binary16; 1.0, -2.0 in bfloat16.
        let half: [UInt16] = [0x3C00, 0xC000, 0x3800, 0x7BFF], brain: [UInt16] = [0x3F80, 0xC000]
        var data: [UInt8] = []
        for v in half + brain { data += [UInt8(v & 0xFF), UInt8(v >> 8)] }
        let header = Self.header(Self.entry("h", "F16", shape: "[4]", offsets: "[0,8]"),
                                 Self.entry("b", "BF16", shape: "[2]", offsets: "[8,12]"))
        let file = try SafeTensorsFile(data: safetensorsBytes(header, data: data))
        #expect(try file.floats("h") == [1, -2, 0.5, 65504])
        #expect(try file.floats("b") == [1, -2])
    }

    /// One tensor's entry of a safetensors header, as JSON text.
    static func entry(_ name: String, _ dtype: String = "F32", shape: String, offsets: String) -> String {
        #""\#(name)":{"dtype":"\#(dtype)","shape":\#(shape),"data_offsets":\#(offsets)}"#
    }

    /// A header of these entries.
    static func header(_ entries: String...) -> String { "{" + entries.joined(separator: ",") + "}" }

    static let zeros4: [UInt8] = [0, 0, 0, 0], zeros8 = [UInt8](repeating: 0, count: 8)
    static let corrupt: [(String, Data, SafeTensorsError)] = [
        ("truncated header", Data([1, 2, 3]), .truncatedHeader(fileSize: 3)),
        ("header length beyond the file", safetensorsBytes("{}", declaredLength: 1000),
         .headerLengthBeyondFile(length: 1000, fileSize: 10)),
        ("absurd header length", safetensorsBytes("{}", declaredLength: UInt64.max),
         .headerTooLarge(length: UInt64.max, limit: SafeTensorsFile.maximumHeaderLength)),
        ("unknown dtype", safetensorsBytes(header(entry("x", "F12", shape: "[1]", offsets: "[0,4]")), data: zeros4),
         .unknownDType(name: "x", dtype: "F12")),
        ("offsets outside the data", safetensorsBytes(header(entry("x", shape: "[2]", offsets: "[0,8]")), data: zeros4),
         .offsetsOutsideData(name: "x", end: 8, dataSize: 4)),
        ("shape disagrees with byte length",
         safetensorsBytes(header(entry("x", shape: "[3]", offsets: "[0,8]")), data: zeros8),
         .sizeMismatch(name: "x", shape: [3], dtype: "F32", byteLength: 8)),
        ("overlapping tensors",
         safetensorsBytes(header(entry("x", shape: "[2]", offsets: "[0,8]"),
                                 entry("y", shape: "[1]", offsets: "[4,8]")),
                          data: zeros8),
         .overlappingTensors(first: "x", second: "y")),
        ("reversed offsets", safetensorsBytes(header(entry("x", shape: "[0]", offsets: "[4,0]")), data: zeros8),
         .malformedEntry(name: "x", reason: "data_offsets [4, 0] are not [begin, end]")),
        ("negative dimension", safetensorsBytes(header(entry("x", shape: "[-1]", offsets: "[0,4]")), data: zeros4),
         .malformedEntry(name: "x", reason: "negative dimension in shape [-1]")),
        ("overflowing shape",
         safetensorsBytes(header(entry("x", shape: "[4611686018427387904,4]", offsets: "[0,4]")), data: zeros4),
         .sizeMismatch(name: "x", shape: [4611686018427387904, 4], dtype: "F32", byteLength: 4)),
        // The rest as Python's safetensors, which says "incomplete metadata, file not fully covered" and "invalid
        // offset for tensor `y`"; a key named twice it accepts (the last wins), which we refuse.
        ("duplicate key",
         safetensorsBytes(header(entry("x", shape: "[1]", offsets: "[0,4]"),
                                 entry("x", shape: "[1]", offsets: "[0,4]")),
                          data: zeros4),
         .duplicateKey(name: "x")),
        ("duplicate key spelt with an escape",
         safetensorsBytes(#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}, "\u0078" :"#
                          + #"{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: zeros4),
         .duplicateKey(name: "x")),
        ("bytes after the last tensor",
         safetensorsBytes(header(entry("x", shape: "[1]", offsets: "[0,4]")), data: zeros8),
         .trailingBytes(count: 4)),
        ("a gap between tensors",
         safetensorsBytes(header(entry("x", shape: "[1]", offsets: "[0,4]"),
                                 entry("y", shape: "[1]", offsets: "[8,12]")),
                          data: Array(repeating: 0, count: 12)),
         .gapInData(name: "y", begin: 8, previousEnd: 4)),
    ]

    @Test(arguments: corrupt.map(\.0))
    func rejectsCorruptFile(_ name: String) {
        let (_, data, expected) = Self.corrupt.first { $0.0 == name }!
        #expect(throws: expected) { try SafeTensorsFile(data: data) }
    }

    @Test func rejectsInvalidJSON() {
        #expect {
            try SafeTensorsFile(data: safetensorsBytes("{not json"))
        } throws: { error in
            guard case .invalidJSON = error as? SafeTensorsError else { return false }
            return "\(error)".hasPrefix("safetensors header is not valid JSON")
        }
        #expect {
            try SafeTensorsFile(data: safetensorsBytes(Self.header(Self.entry("x", shape: #""big""#, offsets: "[0,4]")),
                                                       data: Self.zeros4))
        } throws: { error in
            guard case .invalidJSON = error as? SafeTensorsError else { return false }
            return true
        }
    }

    @Test func refusesToConvertIntegerTensors() throws {
        let file = try SafeTensorsFile(data: safetensorsBytes(
            #"{"n":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}"#, data: Array(repeating: 0, count: 8)))
        #expect(throws: SafeTensorsError.notFloatingPoint(name: "n", dtype: "I64")) { try file.floats("n") }
        #expect(throws: SafeTensorsError.missingTensor(name: "m")) { try file.floats("m") }
    }

    /// Keys inside tensor entries and metadata may repeat names at other depths: only the top level counts.
    @Test func nestedNamesAreNotDuplicates() throws {
        let header = Self.header(#""__metadata__":{"x":"1"}"#, Self.entry("x", shape: "[1]", offsets: "[0,4]"),
                                 Self.entry("y", shape: "[1]", offsets: "[4,8]"))
        let file = try SafeTensorsFile(data: safetensorsBytes(header, data: Array(repeating: 0, count: 8)))
        #expect(file.entries.count == 2 && file.metadata == ["x": "1"])
    }

    @Test func errorsReadAsOneSentence() {
        #expect("\(SafeTensorsError.headerLengthBeyondFile(length: 1000, fileSize: 10))"
                == "safetensors header length 1000 runs past the end of the 10-byte file")
    }
}

struct NPYTests {
    func temporary() -> URL { FileManager.default.temporaryDirectory.appendingPathComponent("t-\(UUID()).npy") }

    @Test(arguments: [[2, 3], [1, 3, 5, 4], [7], [0, 4]])
    func roundTrips(shape: [Int]) throws {
        let url = temporary()
        defer { try? FileManager.default.removeItem(at: url) }
        let values = (0..<shape.reduce(1, *)).map { Float($0) * 0.25 - 1 }
        try NPY.write(shape: shape, values: values, to: url)
        let read = try NPY.read(contentsOf: url)
        #expect(read.shape == shape && read.values == values)
        // The header is padded so the data starts 64-byte aligned, as NumPy writes it.
        let data = try Data(contentsOf: url)
        #expect((10 + Int(data[8]) + Int(data[9]) << 8) % 64 == 0)
    }

    func file(_ header: String, payload: Int, version: UInt8 = 1) -> Data {
        var data = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, version, 0])
        let h = Array(header.utf8)
        data.append(contentsOf: [UInt8(h.count & 0xFF), UInt8(h.count >> 8)])
        data.append(contentsOf: h)
        data.append(contentsOf: [UInt8](repeating: 0, count: payload))
        return data
    }

    @Test func rejectsBadFiles() {
        #expect(throws: NPYError.badMagic) { try NPY.read(Data("PK\u{3}\u{4} not numpy".utf8)) }
        #expect(throws: NPYError.unsupportedDType("<f8")) {
            try NPY.read(file("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", payload: 16))
        }
        #expect(throws: NPYError.unsupportedDType(">f4")) {
            try NPY.read(file("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", payload: 8))
        }
        #expect(throws: NPYError.fortranOrder) {
            try NPY.read(file("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", payload: 16))
        }
        #expect(throws: NPYError.lengthMismatch(shape: [2, 3], expectedBytes: 24, actualBytes: 20)) {
            try NPY.read(file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", payload: 20))
        }
        #expect(throws: NPYError.unsupportedVersion(9)) {
            try NPY.read(file("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", payload: 4, version: 9))
        }
        #expect(throws: NPYError.badHeader("shape entry '-3' is not a non-negative integer")) {
            try NPY.read(file("{'descr': '<f4', 'fortran_order': False, 'shape': (-3,), }", payload: 4))
        }
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }"
        let truncated = file(header, payload: 0).prefix(20)
        #expect(throws: NPYError.truncated(expected: 10 + header.utf8.count, actual: 20)) { try NPY.read(truncated) }
    }
}
