import Foundation

/// `multipart/form-data` (RFC 7578) bodies, as browsers and `curl -F` send them. Only what an image upload needs:
/// parts with their Content-Disposition name and filename; every length is checked before it is used.
public enum Multipart {
    public struct Part: Equatable, Sendable {
        public var name: String?
        public var filename: String?
        public var contentType: String?
        public var body: Data
    }

    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        case noBoundary
        case malformed(String)

        public var description: String {
            switch self {
            case .noBoundary: return "multipart/form-data without a valid boundary parameter"
            case let .malformed(reason): return "malformed multipart body: \(reason)"
            }
        }
    }

    /// The boundary of a `multipart/form-data; boundary=…` content type, or nil for any other content type.
    /// Throws when it is multipart but the boundary is missing or not 1–70 characters (RFC 2046).
    public static func boundary(contentType: String) throws -> String? {
        let fields = contentType.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        guard let type = fields.first, type.lowercased() == "multipart/form-data" else { return nil }
        for field in fields.dropFirst() {
            guard let equals = field.firstIndex(of: "=") else { continue }
            guard field[..<equals].trimmingCharacters(in: .whitespaces).lowercased() == "boundary" else { continue }
            var value = field[field.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.hasPrefix("\""),
                value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            guard (1...70).contains(value.utf8.count) else { throw Error.noBoundary }
            return value
        }
        throw Error.noBoundary
    }

    /// More parts than an image upload needs are refused: the cap bounds the work a body can ask for.
    public static let maximumParts = 64
    /// More header bytes in one part than a browser or `curl -F` sends are refused.
    public static let maximumHeaderBytes = 16_384

    /// The parts of a body delimited by `boundary`. Linear in the body: each byte is looked at a bounded number of
    /// times (the delimiter is found with Knuth–Morris–Pratt, never by re-scanning from every position).
    public static func parts(of body: Data, boundary: String) throws -> [Part] {
        let bytes = [UInt8](body)
        let delimiter = Array("--\(boundary)".utf8)
        let search = Search(Array("\r\n".utf8) + delimiter)
        // The first delimiter starts the body or a line (anything before it is a preamble).
        let at: Int
        if bytes.starts(with: delimiter) {
            at = 0
        } else if let found = search.first(in: bytes, from: 0) {
            at = found + 2
        } else {
            throw Error.malformed("no boundary line")
        }
        return try parts(bytes, from: at, delimiter: delimiter, search: search)
    }

    private static func parts(_ bytes: [UInt8], from start: Int, delimiter: [UInt8], search: Search) throws -> [Part] {
        var parts: [Part] = [], at = start
        let crlf = Array("\r\n".utf8)
        while true {
            var cursor = at + delimiter.count
            if bytes[cursor...].starts(with: Array("--".utf8)) { return parts }  // the closing delimiter
            // Transport padding, then the line break that ends the delimiter line.
            while cursor < bytes.endIndex, bytes[cursor] == UInt8(ascii: " ") || bytes[cursor] == UInt8(ascii: "\t") {
                cursor += 1
            }
            guard bytes[cursor...].starts(with: crlf) else {
                throw Error.malformed("boundary line not followed by a line break")
            }
            cursor += 2
            guard parts.count < maximumParts else { throw Error.malformed("more than \(maximumParts) parts") }
            guard let next = search.first(in: bytes, from: cursor) else {
                throw Error.malformed("part \(parts.count + 1) is not closed by a boundary")
            }
            parts.append(try part(bytes[cursor..<next], index: parts.count + 1))
            at = next + 2
        }
    }

    /// Knuth–Morris–Pratt search for one pattern: O(text + pattern) whatever the text holds.
    struct Search {
        let pattern: [UInt8]
        /// fallback[i]: the length of the longest proper prefix of pattern[0...i] that is also its suffix.
        let fallback: [Int]

        init(_ pattern: [UInt8]) {
            var fallback = [Int](repeating: 0, count: pattern.count), k = 0
            for i in pattern.indices.dropFirst() {
                while k > 0 && pattern[i] != pattern[k] { k = fallback[k - 1] }
                if pattern[i] == pattern[k] { k += 1 }
                fallback[i] = k
            }
            (self.pattern, self.fallback) = (pattern, fallback)
        }

        /// Where the pattern first occurs at or after `start`.
        func first(in text: [UInt8], from start: Int) -> Int? {
            var k = 0
            for i in start..<max(start, text.count) {
                while k > 0 && text[i] != pattern[k] { k = fallback[k - 1] }
                if text[i] == pattern[k] { k += 1 }
                if k == pattern.count { return i + 1 - k }
            }
            return nil
        }
    }

    /// The file a client uploaded: the part named `image` or `file`, else the first part with a filename, else
    /// the only part.
    public static func upload(in parts: [Part]) -> Part? {
        parts.first { $0.name == "image" || $0.name == "file" } ?? parts.first { $0.filename != nil }
            ?? (parts.count == 1 ? parts[0] : nil)
    }

    private static func part(_ bytes: ArraySlice<UInt8>, index: Int) throws -> Part {
        let headerEnd: Range<Int>
        if bytes.starts(with: Array("\r\n".utf8)) {
            headerEnd = bytes.startIndex..<(bytes.startIndex + 2)  // no headers
        } else if let end = Search(Array("\r\n\r\n".utf8)).first(in: Array(bytes.prefix(maximumHeaderBytes + 4)),
                                                               from: 0) {
            headerEnd = (bytes.startIndex + end)..<(bytes.startIndex + end + 4)
        } else if bytes.count > maximumHeaderBytes {
            throw Error.malformed("part \(index) has more than \(maximumHeaderBytes) bytes of headers")
        } else {
            throw Error.malformed("part \(index) has no blank line after its headers")
        }
        guard let head = String(validating: bytes[bytes.startIndex..<headerEnd.lowerBound], as: UTF8.self) else {
            throw Error.malformed("part \(index) has headers that are not UTF-8")
        }
        var part = Part(body: Data(bytes[headerEnd.upperBound...]))
        for line in head.components(separatedBy: "\r\n") where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { throw Error.malformed("""
                part \(index) has a header line without a colon
                """) }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            switch name {
            case "content-type": part.contentType = value
            case "content-disposition":
                for parameter in value.split(separator: ";").dropFirst() {
                    guard let equals = parameter.firstIndex(of: "=") else { continue }
                    let key = parameter[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
                    var v = parameter[parameter.index(after: equals)...].trimmingCharacters(in: .whitespaces)
                    if v.count >= 2, v.hasPrefix("\""), v.hasSuffix("\"") { v = String(v.dropFirst().dropLast()) }
                    if key == "name" { part.name = v } else if key == "filename" { part.filename = v }
                }
            default: break
            }
        }
        return part
    }
}
