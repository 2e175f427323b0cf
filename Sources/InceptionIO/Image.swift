import CImageDecode
import Foundation

/// An 8-bit RGB image, pixels interleaved, rows top to bottom.
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0 && pixels.count == width * height * 3,
                     "pixels do not fill \(width)×\(height)")
        (self.width, self.height, self.pixels) = (width, height, pixels)
    }

    /// Pillow's default bound (twice `Image.MAX_IMAGE_PIXELS`, where it raises `DecompressionBombError`).
    public static let defaultMaximumPixels = 178_956_970

    /// Image files larger than this are refused before they are read (no image within the pixel limit needs more).
    public static let maximumFileBytes = 1 << 30

    /// Decodes a JPEG or PNG (recognised by content, not name) to RGB as Pillow's `convert("RGB")` does, refusing
    /// images of more than `maximumPixels` before allocating them, and stopping with `ImageError.tooSlow` once
    /// `timeLimit` has passed (a progressive JPEG of a thousand scans, say).
    public init(decoding data: Data, maximumPixels: Int = RGBImage.defaultMaximumPixels,
                timeLimit: Duration? = nil) throws {
        guard !data.isEmpty else { throw ImageError.empty }
        let bytes = [UInt8](data.prefix(8))
        let isJPEG = bytes.starts(with: [0xFF, 0xD8, 0xFF])
        let isPNG = bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        guard isJPEG || isPNG else { throw ImageError.notAnImage }
        var image = inception_rgb_image()
        var message = [CChar](repeating: 0, count: 256)
        let deadline: Int64 = timeLimit.map { limit -> Int64 in
            let (seconds, attoseconds) = limit.components
            return inception_monotonic_ns() + seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        } ?? 0
        let status = data.withUnsafeBytes { raw in
            let base = raw.bindMemory(to: UInt8.self).baseAddress!
            return isJPEG
                ? inception_decode_jpeg(base, raw.count, Int64(maximumPixels), deadline, &image, &message,
                                        message.count)
                : inception_decode_png(base, raw.count, Int64(maximumPixels), deadline, &image, &message,
                                       message.count)
        }
        let format = isJPEG ? "JPEG" : "PNG"
        switch Int(status) {
        case Int(INCEPTION_DECODE_OK):
            defer { free(image.pixels) }
            let count = Int(image.width) * Int(image.height) * 3
            guard count > 0 else { throw ImageError.corrupt(format: format, reason: "the image has no pixels") }
            self.init(width: Int(image.width), height: Int(image.height),
                      pixels: Array(UnsafeBufferPointer(start: image.pixels, count: count)))
        case Int(INCEPTION_DECODE_TOO_LARGE):
            throw ImageError.tooLarge(width: Int(image.width), height: Int(image.height), maximumPixels: maximumPixels)
        case Int(INCEPTION_DECODE_NO_MEMORY):
            throw ImageError.outOfMemory
        case Int(INCEPTION_DECODE_TOO_SLOW):
            throw ImageError.tooSlow(format: format, limit: timeLimit ?? .zero)
        default:
            let reason = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw ImageError.corrupt(format: format, reason: reason)
        }
    }

    public init(contentsOf url: URL, maximumPixels: Int = RGBImage.defaultMaximumPixels) throws {
        let data: Data
        do { data = try FileInput.read(url, maximumBytes: Self.maximumFileBytes) } catch {
            throw ImageError.unreadable(path: url.path, reason: error.description)
        }
        do { try self.init(decoding: data, maximumPixels: maximumPixels) } catch let error as ImageError {
            throw ImageError.inFile(path: url.path, error)
        }
    }

    /// The image as a PNG file (8-bit RGB).
    public func pngData() throws -> Data {
        var out: UnsafeMutablePointer<UInt8>? = nil
        var size = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = inception_encode_png(pixels, Int32(width), Int32(height), &out, &size, &message, message.count)
        defer { free(out) }
        guard status == INCEPTION_DECODE_OK, let out else {
            if status == INCEPTION_DECODE_NO_MEMORY { throw ImageError.outOfMemory }
            let reason = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw ImageError.corrupt(format: "PNG", reason: reason)
        }
        return Data(bytes: out, count: size)
    }

    // MARK: Geometry

    /// Pillow's `Image.resize((width, height), resample)`: separable, horizontal pass then vertical, each with
    /// the filter stretched by the scale when shrinking (antialiasing), 22-bit fixed-point weights, and rounding
    /// to 8 bits between and after the passes — so results equal Pillow's, not just approximate them.
    public func resized(width: Int, height: Int, filter: ResampleFilter = .bicubic) -> RGBImage {
        resized(width: width, height: height, filter: filter,
                keeping: Region(left: 0, top: 0, width: width, height: height))
    }

    /// A rectangle of pixels: its top-left corner and size.
    public struct Region: Sendable, Equatable {
        public var left, top, width, height: Int
        public init(left: Int, top: Int, width: Int, height: Int) {
            (self.left, self.top, self.width, self.height) = (left, top, width, height)
        }
    }

    /// `resized(width:height:filter:)` followed by a crop to `region`, bit for bit, without computing anything
    /// outside the region: the horizontal pass runs only over the input rows the region's output rows read, and
    /// only for the region's columns. Memory and time depend on the region and the scale, not on the size of the
    /// full resized image (a 1 × 100 000 photo resized to a short side of 341 would be 34 million rows).
    public func resized(width: Int, height: Int, filter: ResampleFilter = .bicubic,
                        keeping region: Region) -> RGBImage {
        precondition(width > 0 && height > 0)
        precondition(region.left >= 0 && region.top >= 0 && region.width > 0 && region.height > 0
                     && region.left + region.width <= width && region.top + region.height <= height,
                     "region outside the image")
        let columns = region.left..<(region.left + region.width), rows = region.top..<(region.top + region.height)
        let vertical = height == self.height
            ? nil : Self.coefficients(inSize: self.height, outSize: height, filter, outputs: rows)
        // The input rows the vertical pass reads (or the region's rows when there is no vertical pass).
        let needed = vertical.map { v in
            v.bounds.map(\.first).min()!..<v.bounds.map { $0.first + $0.count }.max()!
        } ?? rows
        var image: RGBImage
        if width != self.width {
            let horizontal = Self.coefficients(inSize: self.width, outSize: width, filter, outputs: columns)
            image = resample(horizontal: true, horizontal, lines: needed)
        } else {
            image = cropped(left: region.left, top: needed.lowerBound, width: region.width, height: needed.count)
        }
        if let vertical {
            let shifted = Coefficients(bounds: vertical.bounds.map { ($0.first - needed.lowerBound, $0.count) },
                                       weights: vertical.weights, taps: vertical.taps)
            image = image.resample(horizontal: false, shifted, lines: 0..<image.width)
        }
        return image
    }

    /// The `width × height` region whose top-left pixel is (`left`, `top`).
    public func cropped(left: Int, top: Int, width: Int, height: Int) -> RGBImage {
        precondition(left >= 0 && top >= 0 && left + width <= self.width && top + height <= self.height,
                     "crop outside the image")
        var out = [UInt8]()
        out.reserveCapacity(width * height * 3)
        for y in top..<(top + height) {
            let start = (y * self.width + left) * 3
            out.append(contentsOf: pixels[start..<(start + width * 3)])
        }
        return RGBImage(width: width, height: height, pixels: out)
    }

    private static let precisionBits = 22  // Pillow's PRECISION_BITS = 32 − 8 − 2

    /// One pass of the separable resize. Horizontal: output row i is input row `lines.lowerBound + i`, one output
    /// column per coefficient; vertical: one output row per coefficient, over the columns `lines`.
    private func resample(horizontal: Bool, _ c: Coefficients, lines: Range<Int>) -> RGBImage {
        let (outWidth, outHeight) = horizontal ? (c.bounds.count, lines.count) : (lines.count, c.bounds.count)
        var out = [UInt8](repeating: 0, count: outWidth * outHeight * 3)
        let half = 1 << (Self.precisionBits - 1), maximum = 255 << Self.precisionBits
        let precision = Self.precisionBits, width = self.width, taps = c.taps
        @inline(__always) func clamp(_ s: Int) -> UInt8 {
            s >= maximum ? 255 : s <= 0 ? 0 : UInt8(truncatingIfNeeded: s >> precision)
        }
        // The same integer arithmetic as Pillow, per output pixel: Σ weight · input over the filter's taps.
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                c.weights.withUnsafeBufferPointer { weights in
                    c.bounds.withUnsafeBufferPointer { bounds in
                        // Distance between consecutive taps in the source, in bytes.
                        let step = horizontal ? 3 : width * 3
                        for y in 0..<outHeight {
                            for x in 0..<outWidth {
                                let o = horizontal ? x : y
                                let (first, count) = bounds[o]
                                var s0 = half, s1 = half, s2 = half
                                var p = horizontal ? ((lines.lowerBound + y) * width + first) * 3
                                                   : (first * width + lines.lowerBound + x) * 3
                                let w = weights.baseAddress! + o * taps
                                for t in 0..<count {
                                    let wt = w[t]
                                    s0 &+= Int(src[p]) &* wt
                                    s1 &+= Int(src[p + 1]) &* wt
                                    s2 &+= Int(src[p + 2]) &* wt
                                    p += step
                                }
                                let q = (y * outWidth + x) * 3
                                dst[q] = clamp(s0)
                                dst[q + 1] = clamp(s1)
                                dst[q + 2] = clamp(s2)
                            }
                        }
                    }
                }
            }
        }
        return RGBImage(width: outWidth, height: outHeight, pixels: out)
    }

    /// For each output index: the first input index and how many contribute, and their fixed-point weights
    /// (`taps` per output, zero-padded).
    struct Coefficients {
        var bounds: [(first: Int, count: Int)]
        var weights: [Int]
        var taps: Int
    }

    /// The coefficients of the output indices `outputs` of a resize from `inSize` to `outSize`.
    static func coefficients(inSize: Int, outSize: Int, _ filter: ResampleFilter,
                             outputs: Range<Int>? = nil) -> Coefficients {
        let outputs = outputs ?? 0..<outSize
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1)
        let support = filter.support * filterScale
        let taps = Int(support.rounded(.up)) * 2 + 1
        var bounds: [(first: Int, count: Int)] = [], weights = [Int](repeating: 0, count: outputs.count * taps)
        for (i, o) in outputs.enumerated() {
            let center = (Double(o) + 0.5) * scale
            let first = max(0, Int(center - support + 0.5))  // Int() truncates toward zero, as C's (int)
            let count = min(inSize, Int(center + support + 0.5)) - first
            var w = (0..<count).map { filter.weight((Double($0 + first) - center + 0.5) / filterScale) }
            let total = w.reduce(0, +)
            if total != 0 { w = w.map { $0 / total } }
            for t in 0..<count {
                let v = w[t] * Double(1 << precisionBits)
                weights[i * taps + t] = Int(v < 0 ? v - 0.5 : v + 0.5)
            }
            bounds.append((first, count))
        }
        return Coefficients(bounds: bounds, weights: weights, taps: taps)
    }
}

public enum ResampleFilter: String, Sendable, Codable {
    case bicubic, bilinear

    var support: Double { self == .bicubic ? 2 : 1 }

    func weight(_ x: Double) -> Double {
        let x = abs(x)
        switch self {
        case .bilinear:
            return x < 1 ? 1 - x : 0
        case .bicubic:  // Keys' cubic with a = −0.5, as Pillow
            let a = -0.5
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0
        }
    }
}

public indirect enum ImageError: Error, Equatable, CustomStringConvertible {
    case empty
    case notAnImage
    case corrupt(format: String, reason: String)
    case tooLarge(width: Int, height: Int, maximumPixels: Int)
    case outOfMemory
    case tooSlow(format: String, limit: Duration)
    case unreadable(path: String, reason: String)
    case inFile(path: String, ImageError)

    public var description: String {
        switch self {
        case .empty: return "the image is empty (0 bytes)"
        case .notAnImage: return "not a JPEG or PNG image"
        case let .corrupt(format, reason): return "corrupt \(format): \(reason)"
        case let .tooLarge(w, h, limit):
            return "image of \(w)×\(h) pixels exceeds the limit of \(limit) pixels (a possible decompression bomb)"
        case .outOfMemory: return "not enough memory to decode the image"
        case let .tooSlow(format, limit):
            let seconds = Double(limit.components.seconds) + Double(limit.components.attoseconds) * 1e-18
            return "decoding the \(format) took longer than the limit of \(String(format: "%g", seconds)) s"
        case let .unreadable(path, reason): return "cannot read image \(path): \(reason)"
        case let .inFile(path, error): return "\(path): \(error)"
        }
    }
}
