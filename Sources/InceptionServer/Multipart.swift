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
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            guard (1...70).contains(value.utf8.count) else { throw Error.noBoundary }
            return value
        }
        throw Error.noBoundary
    }

    /// The parts of a body delimited by `boundary`.
    public static func parts(of body: Data, boundary: String) throws -> [Part] {
        let delimiter = Data("--\(boundary)".utf8)
        let crlf = Data("\r\n".utf8)
        // The first delimiter starts the body or a line (anything before it is a preamble).
        guard var at = body.range(of: delimiter).map(\.lowerBound) else { throw Error.malformed("no boundary line") }
        if at != body.startIndex {
            guard at - body.startIndex >= 2, body[(at - 2)..<at] == crlf else { throw Error.malformed("no boundary line") }
        }
        var parts: [Part] = []
        while true {
            var cursor = at + delimiter.count
            if body[cursor...].starts(with: Data("--".utf8)) { return parts }  // the closing delimiter
            // Transport padding, then the line break that ends the delimiter line.
            while cursor < body.endIndex, body[cursor] == UInt8(ascii: " ") || body[cursor] == UInt8(ascii: "\t") { cursor += 1 }
            guard body[cursor...].starts(with: crlf) else { throw Error.malformed("boundary line not followed by a line break") }
            cursor += 2
            guard let next = body.range(of: crlf + delimiter, in: cursor..<body.endIndex) else {
                throw Error.malformed("part \(parts.count + 1) is not closed by a boundary")
            }
            parts.append(try part(body[cursor..<next.lowerBound], index: parts.count + 1))
            at = next.lowerBound + 2
        }
    }

    /// The file a client uploaded: the part named `image` or `file`, else the first part with a filename, else
    /// the only part.
    public static func upload(in parts: [Part]) -> Part? {
        parts.first { $0.name == "image" || $0.name == "file" } ?? parts.first { $0.filename != nil }
            ?? (parts.count == 1 ? parts[0] : nil)
    }

    private static func part(_ bytes: Data, index: Int) throws -> Part {
        let separator = Data("\r\n\r\n".utf8)
        let headerEnd: Range<Data.Index>
        if bytes.starts(with: Data("\r\n".utf8)) {
            headerEnd = bytes.startIndex..<(bytes.startIndex + 2)  // no headers
        } else if let end = bytes.range(of: separator) {
            headerEnd = end
        } else {
            throw Error.malformed("part \(index) has no blank line after its headers")
        }
        guard let head = String(data: bytes[bytes.startIndex..<headerEnd.lowerBound], encoding: .utf8) else {
            throw Error.malformed("part \(index) has headers that are not UTF-8")
        }
        var part = Part(body: Data(bytes[headerEnd.upperBound...]))
        for line in head.components(separatedBy: "\r\n") where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { throw Error.malformed("part \(index) has a header line without a colon") }
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
