/// Gradients of a convolution (the backward pass of `PackedConvolution`), for training. Maps are NHWC and
/// contiguous (`pixelStride == c`), weights OIHW as PyTorch stores them. Both gradients are accumulated into
/// their destinations, so a map read by several layers sums its gradients in place.
///
///   data gradient, stride 1: a stride-1 convolution of dY with the weights flipped in space and transposed
///       (in ↔ out), padded by kernel − 1 − pad — so it runs on the same packed implicit-GEMM kernel as the
///       forward pass, adding into dX through the kernel's residual epilogue.
///   data gradient, stride 2: dCols = dY · W as a GEMM, then col2im scatters each tap's column block back.
///   weight gradient: dW = dYᵀ · im2col(X) as a GEMM, over chunks of rows; a 1×1 stride-1 layer needs no im2col.
public enum ConvolutionGradient {
    /// Rows of im2col built at a time (bounds the scratch memory to `chunkRows × depth` floats).
    static let chunkRows = 3072

    /// dX += ∂L/∂X for ∂L/∂Y = `outputGradient`.
    public static func data(outputGradient dy: FeatureMap, weights: [Float], geometry g: ConvGeometry,
                            inputGradient dx: FeatureMap, threads: Int) {
        precondition(dy.c == g.outChannels && dx.c == g.inChannels && dy.pixelStride == dy.c && dx.pixelStride == dx.c)
        if g.strideH == 1 && g.strideW == 1 {
            var flipped = [Float](repeating: 0, count: weights.count)
            let (kh, kw) = (g.kernelH, g.kernelW)
            for o in 0..<g.outChannels {
                for i in 0..<g.inChannels {
                    for ky in 0..<kh {
                        for kx in 0..<kw {
                            flipped[((i * g.outChannels + o) * kh + (kh - 1 - ky)) * kw + (kw - 1 - kx)] =
                                weights[((o * g.inChannels + i) * kh + ky) * kw + kx]
                        }
                    }
                }
            }
            let transposed = ConvGeometry(inChannels: g.outChannels, outChannels: g.inChannels, kernel: (kh, kw),
                                          padding: (kh - 1 - g.padH, kw - 1 - g.padW))
            let conv = PackedConvolution(geometry: transposed, weights: flipped, bias: nil, activation: .identity)
            let zeros = [Float](repeating: 0, count: g.outChannels + 16)
            zeros.withUnsafeBufferPointer {
                conv.run(input: dy, output: dx, residual: dx, zeros: $0.baseAddress!, threads: threads)
            }
            return
        }
        // W as a `outChannels × depth` matrix in the (tap, channel) order of im2col.
        let depth = g.depth
        var w = [Float](repeating: 0, count: g.outChannels * depth)
        for o in 0..<g.outChannels {
            for i in 0..<g.inChannels {
                for t in 0..<g.taps {
                    w[o * depth + t * g.inChannels + i] = weights[(o * g.inChannels + i) * g.taps + t]
                }
            }
        }
        let rowsPerImage = dy.h * dy.w
        let columns = AlignedBuffer(count: rowsPerImage * depth)
        let out = UncheckedSendable(columns.pointer)
        w.withUnsafeBufferPointer { w in
            for b in 0..<dy.n {
                let dyImage = MatrixView(rowMajor: dy.pixel(b, 0, 0), rows: rowsPerImage, columns: g.outChannels)
                GEMM.multiply(dyImage, MatrixView(rowMajor: w.baseAddress!, rows: g.outChannels, columns: depth),
                              into: columns.pointer, ldc: depth, accumulate: false, threads: threads)
                // col2im: disjoint channel blocks per task, so overlapping windows never race.
                let blocks = (g.inChannels + 15) / 16
                Parallel.parallelFor(blocks, threads: threads) { block in
                    let c0 = block * 16, cn = min(16, g.inChannels - c0)
                    for oy in 0..<dy.h {
                        for ox in 0..<dy.w {
                            let row = out.value + (oy * dy.w + ox) * depth
                            for ky in 0..<g.kernelH {
                                let iy = oy * g.strideH - g.padH + ky
                                if iy < 0 || iy >= dx.h { continue }
                                for kx in 0..<g.kernelW {
                                    let ix = ox * g.strideW - g.padW + kx
                                    if ix < 0 || ix >= dx.w { continue }
                                    let src = row + (ky * g.kernelW + kx) * g.inChannels + c0
                                    let dst = dx.pixel(b, iy, ix) + c0
                                    for j in 0..<cn { dst[j] += src[j] }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// dW (OIHW, `outChannels × inChannels × kernelH × kernelW`) += ∂L/∂W.
    public static func weights(input x: FeatureMap, outputGradient dy: FeatureMap, geometry g: ConvGeometry,
                               into dw: UnsafeMutablePointer<Float>, threads: Int) {
        precondition(dy.c == g.outChannels && x.c == g.inChannels && dy.pixelStride == dy.c && x.pixelStride == x.c)
        let depth = g.depth
        let rows = dy.pixels
        let pointwise = g.taps == 1 && g.strideH == 1 && g.strideW == 1 && g.padH == 0 && g.padW == 0
        if pointwise {
            // OIHW with a 1×1 kernel is already `outChannels × inChannels`.
            GEMM.multiply(MatrixView(rowMajor: dy.base, rows: rows, columns: g.outChannels).transposed,
                          MatrixView(rowMajor: x.base, rows: rows, columns: g.inChannels),
                          into: dw, ldc: g.inChannels, accumulate: true, threads: threads)
            return
        }
        let chunk = max(6, min(rows, chunkRows))
        let columns = AlignedBuffer(count: chunk * depth)
        let gradient = AlignedBuffer(count: g.outChannels * depth, zeroed: true)
        let cols = UncheckedSendable(columns.pointer)
        for first in stride(from: 0, to: rows, by: chunk) {
            let count = min(chunk, rows - first)
            // im2col of rows first ..< first + count, zeros for padding.
            Parallel.parallelFor(count, threads: threads) { r in
                let m = first + r
                let b = m / (dy.h * dy.w), rem = m % (dy.h * dy.w)
                let (oy, ox) = (rem / dy.w, rem % dy.w)
                let row = cols.value + r * depth
                for ky in 0..<g.kernelH {
                    let iy = oy * g.strideH - g.padH + ky
                    for kx in 0..<g.kernelW {
                        let ix = ox * g.strideW - g.padW + kx
                        let dst = row + (ky * g.kernelW + kx) * g.inChannels
                        if iy >= 0 && iy < x.h && ix >= 0 && ix < x.w {
                            dst.update(from: x.pixel(b, iy, ix), count: g.inChannels)
                        } else {
                            dst.update(repeating: 0, count: g.inChannels)
                        }
                    }
                }
            }
            GEMM.multiply(MatrixView(rowMajor: dy.base + first * g.outChannels, rows: count, columns: g.outChannels).transposed,
                          MatrixView(rowMajor: columns.pointer, rows: count, columns: depth),
                          into: gradient.pointer, ldc: depth, accumulate: true, threads: threads)
        }
        for o in 0..<g.outChannels {
            for i in 0..<g.inChannels {
                for t in 0..<g.taps { dw[(o * g.inChannels + i) * g.taps + t] += gradient.pointer[o * depth + t * g.inChannels + i] }
            }
        }
    }
}

extension Reference {
    /// ∂L/∂X and ∂L/∂W of `convolution` (no bias, scale 1, identity) for ∂L/∂Y = `outputGradient`, by direct loops in
    /// Double: each product of the forward sum sends its share back to the input and to the weight.
    public static func convolutionGradients(_ input: Tensor, weights: [Float], geometry g: ConvGeometry,
                                            outputGradient dy: Tensor) -> (input: [Float], weights: [Float]) {
        let (n, h, w) = (input.shape[0], input.shape[1], input.shape[2])
        let (oh, ow) = g.outputSize(h: h, w: w)
        var dx = [Double](repeating: 0, count: input.count), dw = [Double](repeating: 0, count: weights.count)
        for b in 0..<n { for oy in 0..<oh { for ox in 0..<ow { for o in 0..<g.outChannels {
            let d = Double(dy.scalars[((b * oh + oy) * ow + ox) * g.outChannels + o])
            for ky in 0..<g.kernelH {
                let iy = oy * g.strideH - g.padH + ky
                if iy < 0 || iy >= h { continue }
                for kx in 0..<g.kernelW {
                    let ix = ox * g.strideW - g.padW + kx
                    if ix < 0 || ix >= w { continue }
                    for i in 0..<g.inChannels {
                        let wi = ((o * g.inChannels + i) * g.kernelH + ky) * g.kernelW + kx
                        let xi = ((b * h + iy) * w + ix) * g.inChannels + i
                        dx[xi] += d * Double(weights[wi])
                        dw[wi] += d * Double(input.scalars[xi])
                    }
                }
            }
        } } } }
        return (dx.map(Float.init), dw.map(Float.init))
    }
}
