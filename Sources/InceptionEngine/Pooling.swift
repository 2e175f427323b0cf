/// Pooling over NHWC feature maps, vectorised across channels, threads over output rows.

package enum Pooling {
    /// How many windows a max pool without padding has along a side of `size`: whole windows only, or with
    /// `ceilMode` PyTorch's rule (⌈(size − kernel) / stride⌉ + 1, less one where that window would start outside);
    /// 0 where none fits.
    package static func maxPoolOutputSize(_ size: Int, kernel: Int, stride: Int, ceilMode: Bool) -> Int {
        guard size >= kernel else { return 0 }
        guard ceilMode else { return (size - kernel) / stride + 1 }
        let count = (size - kernel + stride - 1) / stride + 1
        return (count - 1) * stride >= size ? count - 1 : count
    }

    /// Max pooling, no padding: the Inception networks' 3×3 stride-2 VALID pools, and MTCNN's ceil-mode pools,
    /// whose last window at the bottom and right edges is clipped to the map.
    package static func maxPool(input: FeatureMap, output: FeatureMap, kernel: Int, stride: Int, ceilMode: Bool,
                                threads: Int) {
        precondition(input.c == output.c && input.n == output.n
                     && output.h == maxPoolOutputSize(input.h, kernel: kernel, stride: stride, ceilMode: ceilMode)
                     && output.w == maxPoolOutputSize(input.w, kernel: kernel, stride: stride, ceilMode: ceilMode),
                     "max pool shapes disagree")
        let c = input.c
        Parallel.parallelFor(output.n * output.h, threads: threads) { row in
            let (b, oy) = (row / output.h, row % output.h)
            let rows = min(kernel, input.h - oy * stride)
            for ox in 0..<output.w {
                let out = output.pixel(b, oy, ox)
                let columns = min(kernel, input.w - ox * stride)
                var ch = 0
                while ch + 8 <= c {
                    var m = SIMD8<Float>(repeating: -.infinity)
                    for ky in 0..<rows {
                        for kx in 0..<columns {
                            let p = input.pixel(b, oy * stride + ky, ox * stride + kx) + ch
                            let v = UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
                            m = m.replacing(with: v, where: v .> m)  // `pointwiseMax` is scalarised per lane
                        }
                    }
                    UnsafeMutableRawPointer(out + ch).storeBytes(of: m, as: SIMD8<Float>.self)
                    ch += 8
                }
                while ch < c {
                    var m = -Float.infinity
                    for ky in 0..<rows {
                        for kx in 0..<columns { m = max(m, input.pixel(b, oy * stride + ky, ox * stride + kx)[ch]) }
                    }
                    out[ch] = m
                    ch += 1
                }
            }
        }
    }

    /// Average pooling with symmetric zero padding excluded from the divisor (PyTorch's
    /// `count_include_pad=False`, TensorFlow's SAME average pool).
    package static func averagePool(input: FeatureMap, output: FeatureMap, kernel: Int, stride: Int, padding: Int,
                                   threads: Int) {
        precondition(input.c == output.c && input.n == output.n
                     && output.h == (input.h + 2 * padding - kernel) / stride + 1
                     && output.w == (input.w + 2 * padding - kernel) / stride + 1, "average pool shapes disagree")
        let c = input.c
        Parallel.parallelFor(output.n * output.h, threads: threads) { row in
            let (b, oy) = (row / output.h, row % output.h)
            let y0 = max(0, oy * stride - padding), y1 = min(input.h, oy * stride - padding + kernel)
            for ox in 0..<output.w {
                let x0 = max(0, ox * stride - padding), x1 = min(input.w, ox * stride - padding + kernel)
                let inverse = 1 / Float((y1 - y0) * (x1 - x0))
                let out = output.pixel(b, oy, ox)
                var ch = 0
                while ch + 8 <= c {
                    var s = SIMD8<Float>()
                    for y in y0..<y1 {
                        for x in x0..<x1 {
                            s += UnsafeRawPointer(input.pixel(b, y, x) + ch).loadUnaligned(as: SIMD8<Float>.self)
                        }
                    }
                    UnsafeMutableRawPointer(out + ch).storeBytes(of: s * inverse, as: SIMD8<Float>.self)
                    ch += 8
                }
                while ch < c {
                    var s: Float = 0
                    for y in y0..<y1 { for x in x0..<x1 { s += input.pixel(b, y, x)[ch] } }
                    out[ch] = s * inverse
                    ch += 1
                }
            }
        }
    }

    /// Mean over all pixels of each image: output is `n × 1 × 1 × c`.
    package static func globalAveragePool(input: FeatureMap, output: FeatureMap, threads: Int) {
        precondition(input.c == output.c && input.n == output.n && output.h == 1 && output.w == 1,
                     "global pool shapes disagree")
        let inverse = 1 / Float(input.h * input.w)
        Parallel.parallelFor(input.n, threads: threads) { b in
            let out = output.pixel(b, 0, 0)
            for ch in 0..<input.c { out[ch] = 0 }
            for y in 0..<input.h {
                for x in 0..<input.w {
                    let p = input.pixel(b, y, x)
                    for ch in 0..<input.c { out[ch] += p[ch] }
                }
            }
            for ch in 0..<input.c { out[ch] *= inverse }
        }
    }

    /// Copies a map into another of the same shape (the rare concat input that cannot be written in place).
    package static func copy(input: FeatureMap, output: FeatureMap, threads: Int) {
        precondition(input.n == output.n && input.h == output.h && input.w == output.w && input.c == output.c)
        Parallel.parallelFor(input.n * input.h, threads: threads) { row in
            let (b, y) = (row / input.h, row % input.h)
            for x in 0..<input.w { output.pixel(b, y, x).update(from: input.pixel(b, y, x), count: input.c) }
        }
    }
}
