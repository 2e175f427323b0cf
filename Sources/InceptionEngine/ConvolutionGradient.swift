/// Gradients of a convolution (the backward pass of `PackedConvolution`), for training. Maps are NHWC and
/// contiguous (`pixelStride == c`), weights OIHW as PyTorch stores them. Both gradients are accumulated into
/// their destinations, so a map read by several layers sums its gradients in place; the data gradient can
/// instead overwrite its destination (the first layer to send a map its gradient).
///
///   data gradient, stride 1: a stride-1 convolution of dY with the weights flipped in space and transposed
///       (in ↔ out), padded by kernel − 1 − pad — so it runs on the same packed implicit-GEMM kernel as the
///       forward pass, adding into dX through the kernel's residual epilogue. Its panels are packed straight
///       from the OIHW weights, mirrored and transposed as they are read.
///   data gradient, stride 2: dCols = dY · W as a GEMM, then col2im scatters each tap's column block back.
///   weight gradient: dW = dYᵀ · im2col(X) as a GEMM whose B panels are packed straight from X, 256 rows at a
///       time, so im2col is never stored; a 1×1 stride-1 layer reads X as B directly.
package enum ConvolutionGradient {
    /// dX += ∂L/∂X for ∂L/∂Y = `outputGradient` (dX = ∂L/∂X when not `accumulate`).
    package static func data(outputGradient dy: FeatureMap, weights: [Float], geometry g: ConvGeometry,
                            inputGradient dx: FeatureMap, accumulate: Bool = true, threads: Int) {
        precondition(dy.c == g.outChannels && dx.c == g.inChannels && dy.pixelStride == dy.c && dx.pixelStride == dx.c)
        if g.strideH == 1 && g.strideW == 1 {
            let (kh, kw) = (g.kernelH, g.kernelW)
            let transposed = ConvGeometry(inChannels: g.outChannels, outChannels: g.inChannels, kernel: (kh, kw),
                                          padding: (kh - 1 - g.padH, kw - 1 - g.padW))
            // Output channel o' of the transposed convolution is input channel o' of the layer, its input channel i'
            // the layer's output channel i', its tap the layer's tap mirrored (taps − 1 − tap).
            let panels = weights.withUnsafeBufferPointer { w in
                let (taps, perOutput) = (g.taps, g.inChannels * g.taps)
                return PackedConvolution.pack(transposed, threads: threads) { o, i, tap in
                    w[i &* perOutput &+ o &* taps &+ (taps &- 1 &- tap)]
                }
            }
            var conv = PackedConvolution(geometry: transposed, activation: .identity, panels: panels,
                                         bias: [Float](repeating: 0, count: (g.inChannels + 15) / 16 * 16))
            conv.tile = TileTuning.gemmTile(Kernels.current)
            let zeros = [Float](repeating: 0, count: g.outChannels + 16)
            zeros.withUnsafeBufferPointer {
                conv.run(input: dy, output: dx, residual: accumulate ? dx : nil, zeros: $0.baseAddress!,
                         threads: threads)
            }
            return
        }
        if !accumulate { dx.base.update(repeating: 0, count: dx.pixels * dx.c) }  // col2im adds overlapping windows
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
    package static func weights(input x: FeatureMap, outputGradient dy: FeatureMap, geometry g: ConvGeometry,
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
        // B = im2col(X), `rows × depth` in (tap, channel) order, packed panel by panel straight from X: each block
        // of rows first finds where its rows' windows start, then a panel copies each row's channel runs (zeros
        // where the window leaves the map).
        let gradient = AlignedBuffer(count: g.outChannels * depth, zeroed: true)
        var windows = [Int](repeating: 0, count: 3 * GEMM.depthBlock)  // per row of a block: image, top, left
        let pixelsPerImage = dy.h * dy.w
        windows.withUnsafeMutableBufferPointer { windows in
        let starts = UncheckedSendable(windows.baseAddress!)
        GEMM.multiply(MatrixView(rowMajor: dy.base, rows: rows, columns: g.outChannels).transposed, columns: depth,
                      into: gradient.pointer, ldc: depth, accumulate: true, threads: threads,
                      beginBlock: { k0, count in
            for r in 0..<count {
                let m = k0 + r
                let b = m / pixelsPerImage, rem = m - b * pixelsPerImage
                let oy = rem / dy.w, ox = rem - oy * dy.w
                (starts.value[3 * r], starts.value[3 * r + 1], starts.value[3 * r + 2]) =
                    (b, oy * g.strideH - g.padH, ox * g.strideW - g.padW)
            }
        }) { dst, _, count, p in
            let first = p * 16, last = min(first + 16, depth)
            var j = first
            while j < last {
                // The run of this panel's columns that belong to one tap.
                let tap = j / g.inChannels, channel = j - tap * g.inChannels
                let run = min(last - j, g.inChannels - channel)
                let (ky, kx) = (tap / g.kernelW, tap % g.kernelW)
                var row = dst + (j - first)
                for r in 0..<count {
                    let (b, iy, ix) = (starts.value[3 * r], starts.value[3 * r + 1] + ky, starts.value[3 * r + 2] + kx)
                    if iy >= 0 && iy < x.h && ix >= 0 && ix < x.w {
                        row.update(from: x.pixel(b, iy, ix) + channel, count: run)
                    } else {
                        row.update(repeating: 0, count: run)
                    }
                    row += 16
                }
                j += run
            }
            if last - first < 16 {
                for r in 0..<count { (dst + r * 16 + (last - first)).update(repeating: 0, count: 16 - (last - first)) }
            }
        }
        }
        for o in 0..<g.outChannels {
            for i in 0..<g.inChannels {
                for t in 0..<g.taps {
                    dw[(o * g.inChannels + i) * g.taps + t] += gradient.pointer[o * depth + t * g.inChannels + i]
                }
            }
        }
    }
}

extension Reference {
    /// ∂L/∂X and ∂L/∂W of `convolution` (no bias, scale 1, identity) for ∂L/∂Y = `outputGradient`, by direct loops in
    /// Double: each product of the forward sum sends its share back to the input and to the weight.
    package static func convolutionGradients(_ input: Tensor, weights: [Float], geometry g: ConvGeometry,
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
