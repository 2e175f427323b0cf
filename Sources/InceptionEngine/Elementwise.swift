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

    /// PyTorch's PReLU: x where x > 0, else slopes[c] · x.
    package static func prelu(input: FeatureMap, output: FeatureMap, slopes: [Float], threads: Int) {
        precondition(slopes.count == output.c, "PReLU has \(slopes.count) slopes for \(output.c) channels")
        Parallel.parallelFor(output.n * output.h, threads: threads) { row in
            let (b, y) = (row / output.h, row % output.h)
            for x in 0..<output.w {
                let i = input.pixel(b, y, x), o = output.pixel(b, y, x)
                for c in 0..<output.c { o[c] = i[c] > 0 ? i[c] : slopes[c] * i[c] }
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
