import Foundation

// The fuzzers compile this file with OpenInference.swift alone (scripts/fuzz.sh, target v2request): Foundation
// only.

/// Why a JSON text could not be read, with the byte offset.
struct JSONScanError: Error, CustomStringConvertible {
    let reason: String, offset: Int
    var description: String { "\(reason) at byte \(offset)" }
}

/// A JSON reader over bytes that the caller walks value by value (RFC 8259): objects member by member, tensors'
/// data into Float storage. Nesting is bounded (64 levels); every read advances, so time is linear in the text.
struct JSONScanner {
    private let bytes: UnsafeBufferPointer<UInt8>
    private(set) var offset = 0
    static let maximumDepth = 64

    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    func error(_ reason: String) -> JSONScanError { JSONScanError(reason: reason, offset: offset) }

    mutating func skipSpace() {
        while offset < bytes.count {
            switch bytes[offset] {
            case 0x20, 0x0A, 0x0D, 0x09: offset += 1
            default: return
            }
        }
    }

    /// The next byte after white space, not consumed; nil at the end.
    mutating func peek() -> UInt8? {
        skipSpace()
        return offset < bytes.count ? bytes[offset] : nil
    }

    mutating func expect(_ byte: UInt8) throws {
        guard peek() == byte else { throw error("expected '\(Character(Unicode.Scalar(byte)))'") }
        offset += 1
    }

    /// Nothing but white space left.
    mutating func end() throws {
        guard peek() == nil else { throw error("text after the JSON value") }
    }

    /// Calls `member` with each key of an object, the scanner at its value (which `member` must read).
    mutating func object(_ member: (inout JSONScanner, String) throws -> Void) throws {
        try expect(UInt8(ascii: "{"))
        if peek() == UInt8(ascii: "}") { offset += 1; return }
        while true {
            guard peek() == UInt8(ascii: "\"") else { throw error("expected a key") }
            let key = try string()
            try expect(UInt8(ascii: ":"))
            try member(&self, key)
            switch peek() {
            case UInt8(ascii: ","): offset += 1
            case UInt8(ascii: "}"): offset += 1; return
            default: throw error("expected ',' or '}'")
            }
        }
    }

    /// Calls `element` for each element of an array, the scanner at it.
    mutating func array(_ element: (inout JSONScanner) throws -> Void) throws {
        try expect(UInt8(ascii: "["))
        if peek() == UInt8(ascii: "]") { offset += 1; return }
        while true {
            try element(&self)
            switch peek() {
            case UInt8(ascii: ","): offset += 1
            case UInt8(ascii: "]"): offset += 1; return
            default: throw error("expected ',' or ']'")
            }
        }
    }

    /// Any value, held whole.
    mutating func value(depth: Int = 0) throws -> JSONValue {
        guard depth < Self.maximumDepth else { throw error("nested more than \(Self.maximumDepth) deep") }
        switch peek() {
        case UInt8(ascii: "{"):
            var members: [String: JSONValue] = [:]
            try object { scanner, key in members[key] = try scanner.value(depth: depth + 1) }
            return .object(members)
        case UInt8(ascii: "["):
            var elements: [JSONValue] = []
            try array { elements.append(try $0.value(depth: depth + 1)) }
            return .array(elements)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case nil: throw error("the text ends where a value was expected")
        default: return .number(try number())
        }
    }

    /// A tensor's data: a value, an array of them, or arrays nested (up to 64 deep); more than `limit` leaves
    /// throws `tooMany` at once, before anything more is read or stored.
    mutating func tensorData(limit: Int, tooMany: () -> Error) throws -> JSONTensorData {
        var floats: [Float] = [], strings: [Data] = [], mixed = false, count = 0
        floats.reserveCapacity(min(limit, (bytes.count - offset) / 2 + 1))
        func leaf(_ scanner: inout JSONScanner, depth: Int) throws {
            guard depth < Self.maximumDepth else { throw scanner.error("nested more than \(Self.maximumDepth) deep") }
            switch scanner.peek() {
            case UInt8(ascii: "["):
                try scanner.array { try leaf(&$0, depth: depth + 1) }
                return
            case UInt8(ascii: "\""):
                let text = try scanner.stringBytes()
                if floats.isEmpty && !mixed { strings.append(text) } else { mixed = true }
            case let byte? where byte == UInt8(ascii: "-") || (0x30...0x39).contains(byte):
                let x = try scanner.float()
                if strings.isEmpty && !mixed { floats.append(x) } else { mixed = true }
            default:
                _ = try scanner.value(depth: depth)
                mixed = true
            }
            count += 1
            if count > limit { throw tooMany() }
        }
        try leaf(&self, depth: 0)
        if mixed { return .mixed(count: count) }
        return strings.isEmpty ? .numbers(floats) : .strings(strings)
    }

    private mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        guard offset + n <= bytes.count,
              (0..<n).allSatisfy({ bytes[offset + $0] == word.utf8Start[$0] }) else { throw error("not a JSON value") }
        offset += n
    }

    mutating func string() throws -> String { String(decoding: try stringBytes(), as: UTF8.self) }

    /// A string's UTF-8 bytes, escapes resolved (a lone surrogate becomes U+FFFD).
    mutating func stringBytes() throws -> Data {
        try expect(UInt8(ascii: "\""))
        let start = offset
        while offset < bytes.count, bytes[offset] != UInt8(ascii: "\""), bytes[offset] != UInt8(ascii: "\\"),
              bytes[offset] >= 0x20 {
            offset += 1
        }
        var text = Data(UnsafeBufferPointer(rebasing: bytes[start..<offset]))
        while true {
            guard offset < bytes.count else { throw error("the text ends inside a string") }
            let byte = bytes[offset]
            offset += 1
            switch byte {
            case UInt8(ascii: "\""): return text
            case UInt8(ascii: "\\"): try escape(into: &text)
            case 0..<0x20: offset -= 1; throw error("a control character inside a string")
            default: text.append(byte)
            }
        }
    }

    private mutating func escape(into text: inout Data) throws {
        guard offset < bytes.count else { throw error("the text ends inside a string") }
        let byte = bytes[offset]
        offset += 1
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): text.append(byte)
        case UInt8(ascii: "b"): text.append(0x08)
        case UInt8(ascii: "f"): text.append(0x0C)
        case UInt8(ascii: "n"): text.append(0x0A)
        case UInt8(ascii: "r"): text.append(0x0D)
        case UInt8(ascii: "t"): text.append(0x09)
        case UInt8(ascii: "u"):
            var unit = try hex4()
            if (0xD800..<0xDC00).contains(unit), offset + 1 < bytes.count, bytes[offset] == UInt8(ascii: "\\"),
               bytes[offset + 1] == UInt8(ascii: "u") {
                offset += 2
                let low = try hex4()
                unit = (0xDC00..<0xE000).contains(low) ? 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00) : 0xFFFD
            }
            text.append(contentsOf: Array(String(Character(Unicode.Scalar(unit) ?? "\u{FFFD}")).utf8))
        default: offset -= 1; throw error("an unknown escape")
        }
    }

    private mutating func hex4() throws -> UInt32 {
        guard offset + 4 <= bytes.count else { throw error("the text ends inside a \\u escape") }
        var unit: UInt32 = 0
        for _ in 0..<4 {
            guard let digit = Character(Unicode.Scalar(bytes[offset])).hexDigitValue else { throw error("not hex") }
            unit = unit << 4 | UInt32(digit)
            offset += 1
        }
        return unit
    }

    /// The extent of a number's text, checked against JSON's grammar.
    private mutating func numberText() throws -> Range<Int> {
        _ = peek()
        let start = offset
        func digits() -> Int {
            let from = offset
            while offset < bytes.count, (0x30...0x39).contains(bytes[offset]) { offset += 1 }
            return offset - from
        }
        if offset < bytes.count, bytes[offset] == UInt8(ascii: "-") { offset += 1 }
        let integer = offset
        guard digits() > 0 else { throw error("not a JSON value") }
        guard bytes[integer] != 0x30 || offset - integer == 1 else { throw error("a number with a leading zero") }
        if offset < bytes.count, bytes[offset] == UInt8(ascii: ".") {
            offset += 1
            guard digits() > 0 else { throw error("a number without digits after its point") }
        }
        if offset < bytes.count, bytes[offset] | 0x20 == UInt8(ascii: "e") {
            offset += 1
            if offset < bytes.count, bytes[offset] == UInt8(ascii: "+") || bytes[offset] == UInt8(ascii: "-") {
                offset += 1
            }
            guard digits() > 0 else { throw error("a number without digits in its exponent") }
        }
        return start..<offset
    }

    mutating func number() throws -> Double {
        let range = try numberText()
        return DecimalText.double(UnsafeBufferPointer(rebasing: bytes[range]))
    }

    /// A number as the Float nearest its Double (what `Float(Double(text))` gives), usually without strtod.
    mutating func float() throws -> Float {
        let range = try numberText()
        return DecimalText.float(UnsafeBufferPointer(rebasing: bytes[range]))
    }
}
