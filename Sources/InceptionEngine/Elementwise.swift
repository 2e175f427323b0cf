import Foundation

/// Element-wise kernels that the fused paths do not cover.
package enum Elementwise {
    /// activation(shortcut + scale · branch); used when a residual cannot fold into a convolution.
    package static func residual(shortcut: FeatureMap, branch: FeatureMap, output: FeatureMap, scale: Float,
                                activation: Activation, threads: Int) {
        Parallel.parallelFor(output.n * output.h, threads: threads) { row in
            let (b, y) = (row / output.h, row % output.h)
            for x in 0..<output.w {
                let s = shortcut.pixel(b, y, x), r = branch.pixel(b, y, x), o = output.pixel(b, y, x)
                for c in 0..<output.c {
                    let v = s[c] + scale * r[c]
                    o[c] = activation == .relu ? max(0, v) : v
                }
            }
        }
    }

    /// output = input · scale[c] + shift[c].
    package static func affine(input: FeatureMap, output: FeatureMap, scale: [Float], shift: [Float], threads: Int) {
        Parallel.parallelFor(output.n * output.h, threads: threads) { row in
            let (b, y) = (row / output.h, row % output.h)
            for x in 0..<output.w {
                let i = input.pixel(b, y, x), o = output.pixel(b, y, x)
                for c in 0..<output.c { o[c] = i[c] * scale[c] + shift[c] }
            }
        }
    }

    /// Each pixel's channel vector divided by max(‖v‖₂, 1e-12), as PyTorch's `F.normalize`.
    package static func l2Normalize(input: FeatureMap, output: FeatureMap, threads: Int) {
        Parallel.parallelFor(output.n * output.h, threads: threads) { row in
            let (b, y) = (row / output.h, row % output.h)
            for x in 0..<output.w {
                let i = input.pixel(b, y, x), o = output.pixel(b, y, x)
                var sum = 0.0
                for c in 0..<output.c { sum += Double(i[c]) * Double(i[c]) }
                let inverse = Float(1 / max(sum.squareRoot(), 1e-12))
                for c in 0..<output.c { o[c] = i[c] * inverse }
            }
        }
    }

    /// PyTorch's PReLU: x where x > 0, else slopes[c] · x. Dense maps run eight pixels at a time: their 8·c values
    /// are c vectors of eight, each with its own fixed vector of slopes.
    package static func prelu(input: FeatureMap, output: FeatureMap, slopes: [Float], threads: Int) {
        precondition(slopes.count == output.c, "PReLU has \(slopes.count) slopes for \(output.c) channels")
        let c = output.c
        let dense = input.pixelStride == c && output.pixelStride == c
        let pattern = (0..<c).map { k in SIMD8<Float>((0..<8).map { slopes[(k * 8 + $0) % c] }) }
        Parallel.parallelFor(output.n * output.h, threads: threads) { row in
            let (b, y) = (row / output.h, row % output.h)
            var x = 0
            if dense {
                while x + 8 <= output.w {
                    let i = UnsafeRawPointer(input.pixel(b, y, x)), o = UnsafeMutableRawPointer(output.pixel(b, y, x))
                    for k in 0..<c {
                        let v = i.loadUnaligned(fromByteOffset: k * 32, as: SIMD8<Float>.self)
                        o.storeBytes(of: v.replacing(with: v * pattern[k], where: v .<= 0), toByteOffset: k * 32,
                                     as: SIMD8<Float>.self)
                    }
                    x += 8
                }
            }
            for x in x..<output.w {
                let i = input.pixel(b, y, x), o = output.pixel(b, y, x)
                for k in 0..<c { o[k] = i[k] > 0 ? i[k] : slopes[k] * i[k] }
            }
        }
    }

    /// Softmax across each pixel's channels, as PyTorch computes it: exp(x − max) over their sum.
    package static func softmax(input: FeatureMap, output: FeatureMap, threads: Int) {
        Parallel.parallelFor(output.n * output.h, threads: threads) { row in
            let (b, y) = (row / output.h, row % output.h)
            for x in 0..<output.w {
                let i = input.pixel(b, y, x), o = output.pixel(b, y, x)
                var largest = -Float.infinity
                for c in 0..<output.c { largest = max(largest, i[c]) }
                var sum: Float = 0
                for c in 0..<output.c {
                    o[c] = exp(i[c] - largest)
                    sum += o[c]
                }
                for c in 0..<output.c { o[c] /= sum }
            }
        }
    }
}
