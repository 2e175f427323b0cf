// The fuzzers compile this file with GRPCCallGate.swift and InferenceError.swift alone (scripts/fuzz.sh, target
// grpc): no imports.

/// What one `ModelInferRequest` may hold, counted on its wire bytes before protobuf decodes it: decoding makes an
/// object per repeated message entry (8,000,000 empty `inputs` in a 16 MB message took a gigabyte and 15 s), so
/// a message that counts more than a request of the served models can use is refused at its first excess.
struct GRPCMessageBounds: Sendable, Equatable {
    /// Entries of `inputs` and of `raw_input_contents` (a model takes `input` or `image`).
    var inputs = 2
    /// Entries of `outputs` (the served model with the most outputs).
    var outputs = 4
    /// Dimensions of one input's shape (`input` is [N, 3, S, S]).
    var dimensions = 4
    /// Entries of one `bytes_contents` (images of one request).
    var elements = 64
    /// Entries of one `parameters` map.
    var parameters = 16
    /// Bytes of a name, datatype, model name, version, id or parameter key.
    var nameBytes = 256
    /// Fields a message may carry that the service does not know (each kept by the decoder).
    var unknownFields = 256

    /// Why a message was refused: one line, quoting nothing the client sent.
    struct Excess: Error, Equatable, CustomStringConvertible {
        let description: String
    }

    /// Checks a serialized `inference.ModelInferRequest`; throws at the first count past its bound or a byte that
    /// is not protobuf. Linear in the bytes, allocates nothing.
    func check(_ message: UnsafeRawBufferPointer) throws(Excess) {
        var reader = WireReader(message)
        var counts = (inputs: 0, outputs: 0, raw: 0, parameters: 0, unknown: 0)
        while let field = try reader.field() {
            switch (field.number, field.wire) {
            case (1, 2), (2, 2), (3, 2): try name(reader.bytes(field), "the model name, version or id")
            case (4, 2): try parameter(reader.bytes(field), counted: &counts.parameters, "request parameters")
            case (5, 2):
                try count(&counts.inputs, inputs, "inputs")
                try input(reader.bytes(field))
            case (6, 2):
                try count(&counts.outputs, outputs, "outputs")
                try output(reader.bytes(field))
            case (7, 2):
                try count(&counts.raw, inputs, "raw_input_contents entries")
                _ = try reader.bytes(field)
            default:
                try count(&counts.unknown, unknownFields, "fields this service does not know")
                try reader.skip(field)
            }
        }
    }

    /// `InferInputTensor`: name, datatype, shape, parameters, contents.
    private func input(_ bytes: UnsafeRawBufferPointer) throws(Excess) {
        var reader = WireReader(bytes)
        var counts = (dimensions: 0, parameters: 0, unknown: 0)
        while let field = try reader.field() {
            switch (field.number, field.wire) {
            case (1, 2), (2, 2): try name(reader.bytes(field), "an input's name or datatype")
            case (3, 0):
                counts.dimensions += 1
                _ = try reader.varint()
            case (3, 2):
                // Packed: one varint per dimension, each ending in a byte below 0x80.
                counts.dimensions += try reader.bytes(field).reduce(0) { $0 + ($1 < 0x80 ? 1 : 0) }
            case (4, 2): try parameter(reader.bytes(field), counted: &counts.parameters, "an input's parameters")
            case (5, 2): try contents(reader.bytes(field))
            default:
                try count(&counts.unknown, unknownFields, "fields this service does not know")
                try reader.skip(field)
            }
            guard counts.dimensions <= dimensions else {
                throw Excess(description: "the request has more than \(dimensions) dimensions in an input's shape")
            }
        }
    }

    /// `InferTensorContents`: the typed values; only `bytes_contents` (field 8) makes an object per entry.
    private func contents(_ bytes: UnsafeRawBufferPointer) throws(Excess) {
        var reader = WireReader(bytes)
        var elements = 0
        while let field = try reader.field() {
            if field.number == 8 { try count(&elements, self.elements, "bytes_contents elements in an input") }
            try reader.skip(field)
        }
    }

    /// `InferRequestedOutputTensor`: name, parameters.
    private func output(_ bytes: UnsafeRawBufferPointer) throws(Excess) {
        var reader = WireReader(bytes)
        var (parameters, unknown) = (0, 0)
        while let field = try reader.field() {
            switch (field.number, field.wire) {
            case (1, 2): try name(reader.bytes(field), "an output's name")
            case (2, 2): try parameter(reader.bytes(field), counted: &parameters, "an output's parameters")
            default:
                try count(&unknown, unknownFields, "fields this service does not know")
                try reader.skip(field)
            }
        }
    }

    /// A `parameters` map entry, counted in its map: its key bounded as a name; its value (an `InferParameter`) is
    /// one scalar.
    private func parameter(_ bytes: UnsafeRawBufferPointer, counted entries: inout Int,
                           _ what: String) throws(Excess) {
        try count(&entries, parameters, what)
        var reader = WireReader(bytes)
        var fields = 0
        while let field = try reader.field() {
            try count(&fields, 2 + unknownFields, "fields in a parameter")
            if field.number == 1, field.wire == 2 { try name(reader.bytes(field), "a parameter's name") } else {
                try reader.skip(field)
            }
        }
    }

    private func name(_ bytes: UnsafeRawBufferPointer, _ what: String) throws(Excess) {
        guard bytes.count <= nameBytes else {
            throw Excess(description: "\(what) is \(bytes.count) bytes long; at most \(nameBytes) are accepted")
        }
    }

    /// One more of `what`, refused past `bound`.
    private func count(_ count: inout Int, _ bound: Int, _ what: String) throws(Excess) {
        count += 1
        guard count <= bound else { throw Excess(description: "the request has more than \(bound) \(what)") }
    }
}

/// Protobuf's wire format, read field by field without decoding: varints, fixed widths, length-delimited bytes.
struct WireReader {
    struct Field { let number: UInt64, wire: UInt8 }

    private let bytes: UnsafeRawBufferPointer
    private var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    /// The next field's number and wire type; nil at the end.
    mutating func field() throws(GRPCMessageBounds.Excess) -> Field? {
        guard offset < bytes.count else { return nil }
        let tag = try varint()
        let field = Field(number: tag >> 3, wire: UInt8(tag & 7))
        guard field.number >= 1, field.number <= 536_870_911 else { throw malformed }
        return field
    }

    mutating func varint() throws(GRPCMessageBounds.Excess) -> UInt64 {
        var value: UInt64 = 0
        for shift in stride(from: 0 as UInt64, to: 70, by: 7) {
            guard offset < bytes.count, shift < 64 else { throw malformed }
            let byte = bytes[offset]
            offset += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return value }
        }
        throw malformed
    }

    /// A length-delimited field's bytes (its wire type checked by the caller's match).
    mutating func bytes(_ field: Field) throws(GRPCMessageBounds.Excess) -> UnsafeRawBufferPointer {
        let length = try varint()
        guard length <= UInt64(bytes.count - offset) else { throw malformed }
        defer { offset += Int(length) }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + Int(length)])
    }

    /// Steps over a field of any wire type but groups (which no message of the service has).
    mutating func skip(_ field: Field) throws(GRPCMessageBounds.Excess) {
        switch field.wire {
        case 0: _ = try varint()
        case 1, 5:
            let width = field.wire == 1 ? 8 : 4
            guard bytes.count - offset >= width else { throw malformed }
            offset += width
        case 2: _ = try bytes(field)
        default: throw malformed
        }
    }

    private var malformed: GRPCMessageBounds.Excess {
        GRPCMessageBounds.Excess(description: "the message is not a valid protobuf ModelInferRequest")
    }
}
