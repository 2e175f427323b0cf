import Foundation

// The fuzzers compile this file with JSONScanner.swift and InferenceError.swift alone (scripts/fuzz.sh, target
// v2request): Foundation only.

/// The Open Inference Protocol (KServe V2), the REST half, as Triton, KServe, MLServer and OpenVINO Model Server
/// speak it, so their clients (`tritonclient.http`, say) work unchanged. Each model takes one of two inputs — `input`,
/// FP32 `[N, 3, S, S]` already preprocessed (S the model's input size), or `image`, BYTES `[N]` of encoded JPEG or
/// PNG images run through the model's own preprocessing — and answers any of its outputs by name. Requests share the
/// `/v1` routes' batcher, admission, body limit and metrics. Extensions: binary tensor data (both ways) and
/// classification (`"score:index:label"` rows, the score being the output's value, as Triton writes it).
///
/// A request's JSON is read by `JSONScanner`, its tensors' `data` straight into Float storage (no object per
/// number), bounded by the declared shape: a tensor of JSON numbers costs about what its binary form does.
package enum OpenInference {
    static let extensions = ["binary_tensor_data", "classification"]
    /// Images one request may carry.
    static let maximumBatch = 64

    /// A malformed request, in one line naming the fault (a 400).
    package struct RequestError: Error, CustomStringConvertible {
        package let description: String
        init(_ description: String) { self.description = description }
    }

    /// One tensor of a request, decoded.
    package enum Payload {
        case floats([Float])
        case bytes([Data])
    }

    package struct Input {
        package let name: String, datatype: String, shape: [Int], payload: Payload
    }

    /// What a request asks of one output.
    struct OutputRequest {
        let name: String
        var binary: Bool
        var classification: Int?
    }

    package struct Request {
        package let inputs: [Input]
        /// Nil: every output of the model.
        let outputs: [OutputRequest]?
        let binaryOutputs: Bool
        let id: String?
        /// The request parameter `detect`: find each `image`'s largest face and take its aligned crop.
        var detect = false
    }

    /// An input as the JSON gives it: its members but `data`, and `data` read as a tensor.
    struct InputText {
        var members: [String: JSONValue] = [:]
        var data: JSONTensorData?
        var name: String { members["name"]?.string ?? "?" }
    }

    /// A request body: JSON, or with the binary extension a JSON header of `headerLength` bytes followed by the
    /// tensors' bytes in the order of the inputs that declare `binary_data_size`.
    package static func parse(_ body: Data, headerLength: Int?) throws -> Request {
        let length = headerLength ?? body.count
        guard length >= 0 && length <= body.count else {
            throw RequestError("Inference-Header-Content-Length \(length) is beyond the body of \(body.count) bytes")
        }
        let (members, inputs) = try body.prefix(length).withUnsafeBytes { raw in
            try header(JSONScanner(raw.assumingMemoryBound(to: UInt8.self)))
        }
        var binary = body.dropFirst(length)
        guard let inputs, !inputs.isEmpty else { throw RequestError("the inference request has no inputs") }
        let decoded = try inputs.map { try input($0, binary: &binary) }
        guard binary.isEmpty else {
            throw RequestError("\(binary.count) bytes of binary data follow the last input's")
        }
        let binaryOutputs = members["parameters"]?["binary_data_output"]?.bool ?? false
        let outputs = try members["outputs"]?.array.map { try $0.map { try output($0, binaryOutputs) } }
        var request = Request(inputs: decoded, outputs: outputs, binaryOutputs: binaryOutputs,
                              id: members["id"]?.string)
        request.detect = members["parameters"]?["detect"]?.bool ?? false
        return request
    }

    /// The request's members, `inputs` read input by input (nil when it is not an array).
    static func header(_ start: JSONScanner) throws -> ([String: JSONValue], [InputText]?) {
        var scanner = start, members: [String: JSONValue] = [:], inputs: [InputText]?
        guard scanner.peek() == UInt8(ascii: "{") else {
            throw RequestError("the inference request is not a JSON object")
        }
        do {
            try scanner.object { scanner, key in
                guard key == "inputs", scanner.peek() == UInt8(ascii: "[") else {
                    members[key] = try scanner.value(depth: 1)
                    return
                }
                var list: [InputText] = []
                try scanner.array { list.append(try inputText(&$0)) }
                inputs = list
            }
            try scanner.end()
        } catch let error as JSONScanError {
            throw RequestError("the inference request is not valid JSON: \(error)")
        }
        return (members, inputs)
    }

    /// One input object; its `data` read as a tensor, at most as many values as a `shape` given before it holds.
    static func inputText(_ scanner: inout JSONScanner) throws -> InputText {
        var text = InputText()
        guard scanner.peek() == UInt8(ascii: "{") else {
            _ = try scanner.value(depth: 2)
            return text
        }
        try scanner.object { scanner, key in
            guard key == "data" else {
                text.members[key] = try scanner.value(depth: 3)
                return
            }
            // A shape that is not one is named later, by `input`; here it bounds nothing.
            let shape = text.members["shape"]?.array?.map(\.int)
            let dimensions = shape.flatMap { $0.allSatisfy { ($0 ?? -1) >= 0 } ? $0.map { $0! } : nil }
            let limit = dimensions.flatMap(elementCount) ?? Int.max
            let name = text.name
            text.data = try scanner.tensorData(limit: limit) {
                RequestError("input \(quoted(name)): more data than its shape")
            }
        }
        return text
    }

    static func output(_ json: JSONValue, _ binaryDefault: Bool) throws -> OutputRequest {
        guard let name = json["name"]?.string else { throw RequestError("an output has no name") }
        let parameters = json["parameters"]
        var classification: Int?
        if let k = parameters?["classification"] {
            guard let k = k.int, k >= 1 else {
                throw RequestError("output \(quoted(name)): classification must be a whole number of at least 1")
            }
            classification = k
        }
        return OutputRequest(name: name, binary: parameters?["binary_data"]?.bool ?? binaryDefault,
                             classification: classification)
    }

    /// One input: its shape checked against its element count, its data from JSON or the binary section.
    static func input(_ text: InputText, binary: inout Data.SubSequence) throws -> Input {
        let shape = text.members["shape"]?.array?.map(\.int)
        guard let name = text.members["name"]?.string, let datatype = text.members["datatype"]?.string,
              let shape, shape.allSatisfy({ $0 != nil }) else {
            throw RequestError("an input lacks its name, datatype or shape")
        }
        let dimensions = shape.map { $0! }
        let count = try checkedCount(dimensions, name: name)
        let payload: Payload
        if let size = text.members["parameters"]?["binary_data_size"] {
            guard let size = size.int, size >= 0, size <= binary.count else {
                throw RequestError("input \(quoted(name)): binary_data_size is beyond the binary data sent")
            }
            payload = try binaryPayload(Data(binary.prefix(size)), name: name, datatype: datatype, count: count)
            binary = binary.dropFirst(size)
        } else {
            payload = try jsonPayload(text.data, name: name, datatype: datatype, count: count)
        }
        return Input(name: name, datatype: datatype, shape: dimensions, payload: payload)
    }

    /// The element count of an input's shape, refused before its data are read when no model could take it: a
    /// negative or overflowing dimension, more than 4 dimensions, more than `maximumBatch` rows.
    static func checkedCount(_ shape: [Int], name: String) throws -> Int {
        guard shape.allSatisfy({ $0 >= 0 }), let count = elementCount(shape) else {
            throw RequestError("input \(quoted(name)): shape \(quoted(shape)) is not a tensor's shape")
        }
        guard shape.count <= 4, (shape.first ?? 0) <= maximumBatch else {
            throw RequestError("input \(quoted(name)): shape \(quoted(shape)) is not one a model takes (at most 4 "
                               + "dimensions and \(maximumBatch) rows)")
        }
        return count
    }

    /// The product of `shape`, nil when it overflows or passes 2³¹ elements.
    static func elementCount(_ shape: [Int]) -> Int? {
        var count = 1
        for d in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, product <= Int(Int32.max) else { return nil }
            count = product
        }
        return count
    }

    static func binaryPayload(_ data: Data, name: String, datatype: String, count: Int) throws -> Payload {
        switch datatype {
        case "FP32":
            guard data.count == 4 * count else {
                throw RequestError("input \(quoted(name)): \(data.count) bytes for \(count) FP32 values")
            }
            return .floats(data.withUnsafeBytes { raw in
                (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0,
                                                                                        as: UInt32.self))) }
            })
        case "BYTES":
            var elements: [Data] = [], cursor = data.startIndex
            while cursor < data.endIndex {
                guard data.endIndex - cursor >= 4 else { break }
                let length = data[cursor..<cursor + 4].enumerated()
                    .reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
                cursor += 4
                guard data.endIndex - cursor >= length else { break }
                elements.append(Data(data[cursor..<cursor + length]))
                cursor += length
            }
            guard cursor == data.endIndex, elements.count == count else {
                throw RequestError("input \(quoted(name)): the BYTES data do not hold \(count) length-prefixed "
                                   + "elements")
            }
            return .bytes(elements)
        default:
            throw RequestError("input \(quoted(name)): datatype \(quoted(datatype)) is not FP32 or BYTES")
        }
    }

    static func jsonPayload(_ data: JSONTensorData?, name: String, datatype: String, count: Int) throws -> Payload {
        guard let data else { throw RequestError("input \(quoted(name)) has no data") }
        guard data.count == count else {
            throw RequestError("input \(quoted(name)): \(data.count) values for a shape of \(count)")
        }
        switch (datatype, data) {
        case let ("FP32", .numbers(values)): return .floats(values)
        case ("FP32", _) where count > 0: throw RequestError("input \(quoted(name)): FP32 data must be numbers")
        case ("FP32", _): return .floats([])
        case let ("BYTES", .strings(values)): return .bytes(values)
        case ("BYTES", _) where count > 0: throw RequestError("input \(quoted(name)): BYTES data must be strings")
        case ("BYTES", _): return .bytes([])
        default: throw RequestError("input \(quoted(name)): datatype \(quoted(datatype)) is not FP32 or BYTES")
        }
    }
}
