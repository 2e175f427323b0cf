import InceptionIO

/// PyTorch's `interpolate(mode="area")` — adaptive average pooling — of a region of an 8-bit image, as
/// facenet-pytorch's MTCNN resamples its pyramid and its crops, followed by MTCNN's input scaling
/// `(v − 127.5) · 0.0078125`. Output pixel (y, x) averages input rows ⌊y·H/h⌋ ..< ⌈(y+1)·H/h⌉ and the columns
/// likewise, summed in Float row by row and divided by the row count and then by the column count, as ATen does.
struct AreaResample {
    let image: RGBImage
    /// The region read: columns `left ..< left + width`, rows `top ..< top + height`.
    let left: Int, top: Int, width: Int, height: Int
    let outWidth: Int, outHeight: Int

    /// Output rows `rows` (all columns), NHWC, written from `out` on.
    func write(rows: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let columns = (0..<outWidth).map { Self.window($0, width, outWidth) }
        image.pixels.withUnsafeBufferPointer { pixels in
            var o = out
            for y in rows {
                let (y0, y1) = Self.window(y, height, outHeight)
                for (x0, x1) in columns {
                    var (r, g, b): (Float, Float, Float) = (0, 0, 0)
                    for iy in (top + y0)..<(top + y1) {
                        var p = (iy * image.width + left + x0) * 3
                        for _ in x0..<x1 {
                            r += Float(pixels[p])
                            g += Float(pixels[p + 1])
                            b += Float(pixels[p + 2])
                            p += 3
                        }
                    }
                    let (kh, kw) = (Float(y1 - y0), Float(x1 - x0))
                    o[0] = (r / kh / kw - 127.5) * 0.0078125
                    o[1] = (g / kh / kw - 127.5) * 0.0078125
                    o[2] = (b / kh / kw - 127.5) * 0.0078125
                    o += 3
                }
            }
        }
    }

    /// The input indices output `i` of `outSize` averages over: ATen's `start_index` and `end_index`.
    static func window(_ i: Int, _ inSize: Int, _ outSize: Int) -> (Int, Int) {
        (i * inSize / outSize, ((i + 1) * inSize + outSize - 1) / outSize)
    }
}
