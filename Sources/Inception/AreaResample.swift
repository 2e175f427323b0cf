import InceptionIO

/// PyTorch's `interpolate(mode="area")` — adaptive average pooling — of a region of an 8-bit image, as
/// facenet-pytorch's MTCNN resamples its pyramid and its crops, followed by MTCNN's input scaling
/// `(v − 127.5) · 0.0078125`. Output pixel (y, x) averages input rows ⌊y·H/h⌋ ..< ⌈(y+1)·H/h⌉ and the columns
/// likewise, summed in Float row by row and divided by the row count and then by the column count, as ATen does.
///
/// Sums of 8-bit values are whole numbers, exact in Float up to 2²⁴: while a window holds at most 2²⁴ / 255 pixels,
/// every partial sum ATen forms is exact, so any order gives its result — here each row's part comes from the
/// photo's prefix sums along rows (`RowSums`), a subtraction instead of a pass over the row. Larger windows are summed
/// as ATen sums them.
struct AreaResample {
    let image: RGBImage
    /// The photo's prefix sums along rows, when it was small enough to keep them.
    let sums: RowSums?
    /// The region read: columns `left ..< left + width`, rows `top ..< top + height`.
    let left: Int, top: Int, width: Int, height: Int
    let outWidth: Int, outHeight: Int

    /// Output rows `rows` (all columns), NHWC, written from `out` on.
    func write(rows: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let columns = (0..<outWidth).map { Self.window($0, width, outWidth) }
        var o = out
        for y in rows {
            let (y0, y1) = Self.window(y, height, outHeight)
            for (x0, x1) in columns {
                let rows = (top + y0)..<(top + y1)
                let rgb = (y1 - y0) * (x1 - x0) <= (1 << 24) / 255 && sums != nil
                    ? exactSum(rows, left + x0, left + x1) : floatSum(rows, left + x0, left + x1)
                let (kh, kw) = (Float(y1 - y0), Float(x1 - x0))
                o[0] = (rgb.0 / kh / kw - 127.5) * 0.0078125
                o[1] = (rgb.1 / kh / kw - 127.5) * 0.0078125
                o[2] = (rgb.2 / kh / kw - 127.5) * 0.0078125
                o += 3
            }
        }
    }

    /// The window's sums, whole, from the row prefix sums.
    private func exactSum(_ rows: Range<Int>, _ x0: Int, _ x1: Int) -> (Float, Float, Float) {
        sums!.values.withUnsafeBufferPointer { p in
            var (r, g, b) = (0, 0, 0)
            let stride = (image.width + 1) * 3
            for y in rows {
                let (a, z) = (y * stride + x0 * 3, y * stride + x1 * 3)
                r += Int(p[z] &- p[a])
                g += Int(p[z + 1] &- p[a + 1])
                b += Int(p[z + 2] &- p[a + 2])
            }
            return (Float(r), Float(g), Float(b))
        }
    }

    /// The window's sums in Float, pixel by pixel in ATen's order.
    private func floatSum(_ rows: Range<Int>, _ x0: Int, _ x1: Int) -> (Float, Float, Float) {
        image.pixels.withUnsafeBufferPointer { pixels in
            var (r, g, b): (Float, Float, Float) = (0, 0, 0)
            for y in rows {
                var p = (y * image.width + x0) * 3
                for _ in x0..<x1 {
                    r += Float(pixels[p])
                    g += Float(pixels[p + 1])
                    b += Float(pixels[p + 2])
                    p += 3
                }
            }
            return (r, g, b)
        }
    }

    /// The input indices output `i` of `outSize` averages over: ATen's `start_index` and `end_index`.
    static func window(_ i: Int, _ inSize: Int, _ outSize: Int) -> (Int, Int) {
        (i * inSize / outSize, ((i + 1) * inSize + outSize - 1) / outSize)
    }
}

/// Each row's running sums of an image's channels: `values[(y · (width + 1) + x) · 3 + c]` is the sum of channel c
/// over pixels 0 ..< x of row y (a row of 255s sums to at most 255 · width, within Int32 for any width the pixel
/// limit allows).
struct RowSums: Sendable {
    let values: [Int32]

    /// Kept for photos of at most this many pixels (12 bytes a pixel: 192 MB).
    static let maximumPixels = 16 << 20

    init?(_ image: RGBImage) {
        guard image.width * image.height <= Self.maximumPixels else { return nil }
        var values = [Int32](repeating: 0, count: image.height * (image.width + 1) * 3)
        image.pixels.withUnsafeBufferPointer { pixels in
            values.withUnsafeMutableBufferPointer { out in
                for y in 0..<image.height {
                    var (r, g, b): (Int32, Int32, Int32) = (0, 0, 0)
                    var p = y * image.width * 3, q = y * (image.width + 1) * 3 + 3
                    for _ in 0..<image.width {
                        r &+= Int32(pixels[p])
                        g &+= Int32(pixels[p + 1])
                        b &+= Int32(pixels[p + 2])
                        (out[q], out[q + 1], out[q + 2]) = (r, g, b)
                        p += 3
                        q += 3
                    }
                }
            }
        }
        self.values = values
    }
}
