/// JSON text written straight into bytes: the answers of the Open Inference Protocol, whose tensors are long
/// arrays of numbers (no `[String: Any]`, no NSNumber per element). Floats are written with Swift's shortest digits
/// that read back as the same Float, so a client that reads them as FP32 gets the bits the model computed.
package struct JSONWriter {
    package private(set) var bytes: [UInt8] = []

    package init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    /// Punctuation and keys known to need no escaping.
    package mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    /// `"key":`.
    package mutating func key(_ name: StaticString) {
        raw("\"")
        raw(name)
        raw("\":")
    }

    /// A string, quoted and escaped (quote, backslash and the control characters).
    package mutating func string(_ text: String) {
        bytes.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), byte])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 15)]])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    package mutating func number(_ value: Int) { bytes.append(contentsOf: String(value).utf8) }

    /// A finite Float in its shortest round-trip digits ("0.1", "1e-05"); JSON has no infinities or NaN, which are
    /// written as null (the server refuses to answer them before it gets here).
    package mutating func number(_ value: Float) {
        guard value.isFinite else { return raw("null") }
        bytes.append(contentsOf: value.description.utf8)
    }

    /// `[a,b,…]`, each element written by `element`.
    package mutating func array<S: Sequence>(_ elements: S, _ element: (inout JSONWriter, S.Element) -> Void) {
        raw("[")
        var first = true
        for e in elements {
            if !first { raw(",") }
            first = false
            element(&self, e)
        }
        raw("]")
    }
}
