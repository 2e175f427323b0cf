import Foundation

// The fuzzers compile this file with OpenInference.swift alone (scripts/fuzz.sh, target v2request): Foundation
// only.

/// A JSON value small enough to hold whole: everything of a request but its tensors' data.
enum JSONValue: Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    subscript(key: String) -> JSONValue? {
        if case let .object(members) = self { return members[key] } else { return nil }
    }

    var string: String? { if case let .string(s) = self { return s } else { return nil } }
    var bool: Bool? { if case let .bool(b) = self { return b } else { return nil } }
    var array: [JSONValue]? { if case let .array(a) = self { return a } else { return nil } }
    var object: [String: JSONValue]? { if case let .object(o) = self { return o } else { return nil } }

    /// A whole number (as JSONSerialization gives `as? Int`): integral, and within Int's range.
    var int: Int? {
        guard case let .number(x) = self, x == x.rounded(), abs(x) < 9.2e18 else { return nil }
        return Int(x)
    }
}

/// A tensor's `data`, read straight into its storage: numbers as Float (nested arrays flattened, in order), strings
/// as their UTF-8 bytes. No value is held as an object.
enum JSONTensorData {
    case numbers([Float])
    case strings([Data])
    /// Numbers and strings together, or something else among them (`true`, an object).
    case mixed(count: Int)

    var count: Int {
        switch self {
        case let .numbers(values): return values.count
        case let .strings(values): return values.count
        case let .mixed(count): return count
        }
    }
}
