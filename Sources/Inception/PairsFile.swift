import Foundation

// The fuzzers compile this file with Verification.swift alone (scripts/fuzz.sh, target pairs): Foundation only.

/// LFW's pairs files: the 10-fold `pairs.txt` (a first line "10 300", then per fold 300 lines `name n m` of the same
/// person and 300 lines `name n other m` of two) and the simple one (the same lines, any number, no first line).
/// Image `n` of `name` is `DIR/name/name_000n.jpg` (LFW's layout; `.png` too when there is no JPEG). Lines end in
/// LF, CRLF or CR (files saved on Windows or an old Mac); a UTF-8 byte order mark is skipped; a first line of two
/// whole numbers is LFW's header and must match the lines that follow. Names are folder names inside the image
/// folder: a name with a path separator, `.`, `..` or a NUL is refused naming its line.
public enum PairsFile {
    /// Lines longer than this are refused (no pair line comes near it): memory follows the pairs, not the bytes.
    public static let maximumLineBytes = 4096

    public static func parse(_ text: String, images directory: String) throws -> [FacePair] {
        var reader = Reader(images: directory)
        try reader.feed(Array(text.utf8))
        return try reader.finish()
    }

    /// Reads a pairs file in pieces, in one pass: memory for the pairs and one line.
    public struct Reader {
        let directory: String
        private var line: [UInt8] = []
        private var number = 0
        private var afterCR = false
        private var started = false
        private var header: (folds: Int, pairs: Int)?
        private var pairs: [FacePair] = []
        /// Each image's path by "name/n", found once per image (a JPEG or, without one, a PNG).
        private var paths: [String: String] = [:]

        public init(images directory: String) { self.directory = directory }

        public mutating func feed(_ bytes: some Sequence<UInt8>) throws {
            let contiguous: Void? = try bytes.withContiguousStorageIfAvailable { buffer in
                for byte in buffer { try take(byte) }
            }
            if contiguous == nil { for byte in bytes { try take(byte) } }
        }

        /// One byte: a line ends at LF, CR, or CRLF (one end).
        private mutating func take(_ byte: UInt8) throws {
            if byte == UInt8(ascii: "\n") && afterCR {
                afterCR = false
                return
            }
            afterCR = byte == UInt8(ascii: "\r")
            if byte == UInt8(ascii: "\n") || afterCR {
                try endLine()
            } else {
                guard line.count < maximumLineBytes else { throw VerificationError.longLine(number + 1) }
                line.append(byte)
            }
        }

        /// The pairs read, once the file ended.
        public mutating func finish() throws -> [FacePair] {
            if !line.isEmpty { try endLine() }
            if let header {
                let (perFold, o1) = header.folds.multipliedReportingOverflow(by: header.pairs)
                let (lines, o2) = perFold.multipliedReportingOverflow(by: 2)
                guard !o1, !o2, lines == pairs.count else {
                    throw VerificationError.headerMismatch(folds: header.folds, pairs: header.pairs,
                                                           lines: pairs.count)
                }
            }
            return pairs
        }

        private mutating func endLine() throws {
            number += 1
            guard !line.isEmpty else { return }
            defer { line.removeAll(keepingCapacity: true) }
            var bytes = line[...]
            if number == 1, bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }
            let fields = bytes.split(whereSeparator: { [9, 10, 11, 12, 13, 32].contains($0) })
                .map { String(decoding: $0, as: UTF8.self) }
            guard !fields.isEmpty else { return }
            defer { started = true }
            if !started, fields.count == 2, let folds = Int(fields[0]), let count = Int(fields[1]) {
                guard folds >= 1, count >= 1 else {
                    throw VerificationError.headerMismatch(folds: folds, pairs: count, lines: 0)
                }
                header = (folds, count)
                return
            }
            pairs.append(try pair(fields))
        }

        private mutating func pair(_ fields: [String]) throws -> FacePair {
            switch fields.count {
            case 3: return FacePair(first: try image(fields[0], fields[1], fields),
                                    second: try image(fields[0], fields[2], fields), same: true)
            case 4: return FacePair(first: try image(fields[0], fields[1], fields),
                                    second: try image(fields[2], fields[3], fields), same: false)
            default: throw VerificationError.badLine(number, fields.joined(separator: " "))
            }
        }

        private mutating func image(_ name: String, _ index: String, _ fields: [String]) throws -> String {
            guard let n = Int(index), n >= 0, n < 100_000 else {
                throw VerificationError.badLine(number, fields.joined(separator: " "))
            }
            guard !name.utf8.contains(where: { $0 == UInt8(ascii: "/") || $0 == 0 }), name != ".", name != ".." else {
                throw VerificationError.badName(number, name)
            }
            let key = "\(name)/\(n)"
            if let known = paths[key] { return known }
            let stem = ((directory as NSString).appendingPathComponent(name) as NSString)
                .appendingPathComponent(String(format: "%@_%04d", name, n))
            let png = stem + ".png"
            let path = FileManager.default.fileExists(atPath: stem + ".jpg")
                || !FileManager.default.fileExists(atPath: png) ? stem + ".jpg" : png
            paths[key] = path
            return path
        }
    }
}
