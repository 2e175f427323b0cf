import Foundation
import Hummingbird
import Inception
import InceptionIO
import NIOCore

/// The Open Inference Protocol (KServe V2), the REST half, as Triton, KServe, MLServer and OpenVINO Model Server
/// speak it, so their clients (`tritonclient.http`, say) work unchanged. Each model takes one of two inputs — `input`,
/// FP32 `[N, 3, S, S]` already preprocessed (S the model's input size), or `image`, BYTES `[N]` of encoded JPEG or
/// PNG images run through the model's own preprocessing — and answers any of its outputs by name. Requests share the
/// `/v1` routes' batcher, admission, body limit and metrics. Extensions: binary tensor data (both ways) and
/// classification (`"score:index:label"` rows, the score being the output's value, as Triton writes it).
enum OpenInference {
    static let extensions = ["binary_tensor_data", "classification"]
    /// Images one request may carry.
    static let maximumBatch = 64

    /// One tensor of a request, decoded.
    enum Payload {
        case floats([Float])
        case bytes([Data])
    }

    struct Input {
        let name: String, datatype: String, shape: [Int], payload: Payload
    }

    /// What a request asks of one output.
    struct OutputRequest {
        let name: String
        var binary: Bool
        var classification: Int?
    }

    struct Request {
        let inputs: [Input]
        /// Nil: every output of the model.
        let outputs: [OutputRequest]?
        let binaryOutputs: Bool
        let id: String?
    }

    /// A request body: JSON, or with the binary extension a JSON header of `headerLength` bytes followed by the
    /// tensors' bytes in the order of the inputs that declare `binary_data_size`.
    static func parse(_ body: Data, headerLength: Int?) throws -> Request {
        let length = headerLength ?? body.count
        guard length >= 0 && length <= body.count else {
            throw APIError(.badRequest,
                           "Inference-Header-Content-Length \(length) is beyond the body of \(body.count) bytes")
        }
        guard let json = try? JSONSerialization.jsonObject(with: body.prefix(length)) as? [String: Any] else {
            throw APIError(.badRequest, "the inference request is not a JSON object")
        }
        var binary = body.dropFirst(length)
        guard let inputs = json["inputs"] as? [[String: Any]], !inputs.isEmpty else {
            throw APIError(.badRequest, "the inference request has no inputs")
        }
        let decoded = try inputs.map { try input($0, binary: &binary) }
        guard binary.isEmpty else {
            throw APIError(.badRequest, "\(binary.count) bytes of binary data follow the last input's")
        }
        let parameters = json["parameters"] as? [String: Any] ?? [:]
        let binaryOutputs = parameters["binary_data_output"] as? Bool ?? false
        let outputs = try (json["outputs"] as? [[String: Any]]).map { try $0.map { try output($0, binaryOutputs) } }
        return Request(inputs: decoded, outputs: outputs, binaryOutputs: binaryOutputs, id: json["id"] as? String)
    }

    static func output(_ json: [String: Any], _ binaryDefault: Bool) throws -> OutputRequest {
        guard let name = json["name"] as? String else { throw APIError(.badRequest, "an output has no name") }
        let parameters = json["parameters"] as? [String: Any] ?? [:]
        var classification: Int?
        if let k = parameters["classification"] {
            guard let k = k as? Int, k >= 1 else {
                throw APIError(.badRequest, "output '\(name)': classification must be a whole number of at least 1")
            }
            classification = k
        }
        return OutputRequest(name: name, binary: parameters["binary_data"] as? Bool ?? binaryDefault,
                             classification: classification)
    }

    /// One input: its shape checked against its element count, its data from JSON or the binary section.
    static func input(_ json: [String: Any], binary: inout Data.SubSequence) throws -> Input {
        guard let name = json["name"] as? String, let datatype = json["datatype"] as? String,
              let shape = json["shape"] as? [Int] else {
            throw APIError(.badRequest, "an input lacks its name, datatype or shape")
        }
        guard shape.allSatisfy({ $0 >= 0 }), let count = elementCount(shape) else {
            throw APIError(.badRequest, "input '\(name)': shape \(shape) is not a tensor's shape")
        }
        let parameters = json["parameters"] as? [String: Any] ?? [:]
        let payload: Payload
        if let size = parameters["binary_data_size"] {
            guard let size = size as? Int, size >= 0, size <= binary.count else {
                throw APIError(.badRequest, "input '\(name)': binary_data_size is beyond the binary data sent")
            }
            payload = try binaryPayload(Data(binary.prefix(size)), name: name, datatype: datatype, count: count)
            binary = binary.dropFirst(size)
        } else {
            payload = try jsonPayload(json["data"], name: name, datatype: datatype, count: count)
        }
        return Input(name: name, datatype: datatype, shape: shape, payload: payload)
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
                throw APIError(.badRequest, "input '\(name)': \(data.count) bytes for \(count) FP32 values")
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
                throw APIError(.badRequest,
                               "input '\(name)': the BYTES data do not hold \(count) length-prefixed elements")
            }
            return .bytes(elements)
        default:
            throw APIError(.badRequest, "input '\(name)': datatype \(datatype) is not FP32 or BYTES")
        }
    }

    static func jsonPayload(_ data: Any?, name: String, datatype: String, count: Int) throws -> Payload {
        guard let data else { throw APIError(.badRequest, "input '\(name)' has no data") }
        var flat: [Any] = []
        func flatten(_ value: Any) throws {
            if let array = value as? [Any] {
                for element in array {
                    try flatten(element)
                    if flat.count > count { throw APIError(.badRequest, "input '\(name)': more data than its shape") }
                }
            } else {
                flat.append(value)
            }
        }
        try flatten(data)
        guard flat.count == count else {
            throw APIError(.badRequest, "input '\(name)': \(flat.count) values for a shape of \(count)")
        }
        switch datatype {
        case "FP32":
            let floats = flat.compactMap { ($0 as? NSNumber).map { Float(truncating: $0) } }
            guard floats.count == count else {
                throw APIError(.badRequest, "input '\(name)': FP32 data must be numbers")
            }
            return .floats(floats)
        case "BYTES":
            let strings = flat.compactMap { ($0 as? String).map { Data($0.utf8) } }
            guard strings.count == count else {
                throw APIError(.badRequest, "input '\(name)': BYTES data must be strings")
            }
            return .bytes(strings)
        default:
            throw APIError(.badRequest, "input '\(name)': datatype \(datatype) is not FP32 or BYTES")
        }
    }
}
