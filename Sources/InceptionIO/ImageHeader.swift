import Foundation

/// What an image file's structure says before it is decoded: its format and size, read from the header (JPEG's
/// start-of-frame segment, PNG's IHDR chunk), and whether the file reaches its end marker (JPEG's EOI after the
/// frame, PNG's IEND chunk) — the checks that find an empty, foreign or truncated file without decoding it. The file
/// is mapped, so only the pages holding the header and the end are read.
public struct ImageHeader: Sendable, Equatable {
    public let format: String
    public let width: Int, height: Int

    public init(contentsOf url: URL, maximumPixels: Int = RGBImage.defaultMaximumPixels) throws {
        let data: Data
        do { data = try FileInput.read(url, maximumBytes: RGBImage.maximumFileBytes, mapped: true) } catch {
            throw ImageError.unreadable(path: url.path, reason: error.description)
        }
        do { try self.init(data, maximumPixels: maximumPixels) } catch let error as ImageError {
            throw ImageError.inFile(path: url.path, error)
        }
    }

    public init(_ data: Data, maximumPixels: Int = RGBImage.defaultMaximumPixels) throws {
        guard !data.isEmpty else { throw ImageError.empty }
        let bytes = [UInt8](data.prefix(8))
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) {
            format = "JPEG"
            (width, height) = try Self.jpegSize(data)
        } else if bytes == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] {
            format = "PNG"
            (width, height) = try Self.pngSize(data)
        } else {
            throw ImageError.notAnImage
        }
        guard width > 0, height > 0 else { throw ImageError.corrupt(format: format, reason: "the image has no pixels") }
        guard width * height <= maximumPixels else {
            throw ImageError.tooLarge(width: width, height: height, maximumPixels: maximumPixels)
        }
    }

    /// The frame's size from the first SOFn segment, after checking that an EOI marker follows it.
    private static func jpegSize(_ data: Data) throws -> (Int, Int) {
        let bytes = data.withUnsafeBytes { Array($0.bindMemory(to: UInt8.self).prefix(1 << 20)) }
        var at = 2
        while at + 4 <= bytes.count {
            guard bytes[at] == 0xFF else { throw corrupt("JPEG", "a segment does not start with a marker") }
            let marker = bytes[at + 1]
            if marker == 0xFF { at += 1; continue }  // fill bytes
            let length = Int(bytes[at + 2]) << 8 | Int(bytes[at + 3])
            guard length >= 2 else { throw corrupt("JPEG", "a segment of length \(length)") }
            let isFrame = (0xC0...0xCF).contains(marker) && ![0xC4, 0xC8, 0xCC].contains(marker)
            if isFrame {
                guard at + 9 <= bytes.count else { break }
                let height = Int(bytes[at + 5]) << 8 | Int(bytes[at + 6])
                let width = Int(bytes[at + 7]) << 8 | Int(bytes[at + 8])
                guard hasEnd(data, after: at) else { throw corrupt("JPEG", "the file ends before its image data does") }
                return (width, height)
            }
            guard marker != 0xDA, marker != 0xD9 else { break }  // scan data or the end before any frame
            at += 2 + length
        }
        throw corrupt("JPEG", "no frame header")
    }

    /// Whether the bytes after `offset` (within the file's last megabyte) hold an EOI marker.
    private static func hasEnd(_ data: Data, after offset: Int) -> Bool {
        data.withUnsafeBytes { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            var i = bytes.count - 2
            while i > offset && i >= bytes.count - (1 << 20) {
                if bytes[i] == 0xFF && bytes[i + 1] == 0xD9 { return true }
                i -= 1
            }
            return false
        }
    }

    /// IHDR's size, after checking that the file ends with an IEND chunk.
    private static func pngSize(_ data: Data) throws -> (Int, Int) {
        let head = [UInt8](data.prefix(24))
        guard head.count == 24, head[12..<16] == [0x49, 0x48, 0x44, 0x52] else {
            throw corrupt("PNG", "no IHDR chunk first")
        }
        let word = { (i: Int) in head[i..<i + 4].reduce(0) { $0 << 8 | Int($1) } }
        // The IEND chunk ends the file, or nearly (a few writers append bytes after it).
        let tail = [UInt8](data.suffix(1024))
        let iend: [UInt8] = [0x49, 0x45, 0x4E, 0x44]
        let found = tail.indices.dropLast(3).contains { tail[$0..<$0 + 4].elementsEqual(iend) }
        guard tail.count >= 12, found else {
            throw corrupt("PNG", "the file ends before its IEND chunk (truncated?)")
        }
        return (word(16), word(20))
    }

    private static func corrupt(_ format: String, _ reason: String) -> ImageError {
        .corrupt(format: format, reason: reason)
    }
}
