/// The training-mode kernels beside their inference forms: BatchNorm on batch statistics, and the backward passes
/// of pooling, the residual sum, ReLU and L2 normalisation. Maps are contiguous NHWC, viewed as `rows × channels`.
///
/// Reductions over rows are split into a fixed number of row blocks summed in Double and then combined in block
/// order, so results are bitwise the same for every thread count.

package enum BatchNormTraining {
    static let reductionBlocks = 32

    /// Per channel Σ f(row, channel) over all rows, deterministic.
    static func channelSums(rows: Int, channels: Int, threads: Int,
                            _ body: @Sendable (_ row: Int, _ sums: UnsafeMutablePointer<Double>) -> Void) -> [Double] {
        let blocks = min(reductionBlocks, max(1, rows))
        var partial = [Double](repeating: 0, count: blocks * channels)
        partial.withUnsafeMutableBufferPointer { p in
            let base = UncheckedSendable(p.baseAddress!)
            Parallel.parallelFor(blocks, threads: threads) { block in
                let sums = base.value + block * channels
                for row in (rows * block / blocks)..<(rows * (block + 1) / blocks) { body(row, sums) }
            }
        }
        var total = [Double](repeating: 0, count: channels)
        for block in 0..<blocks { for c in 0..<channels { total[c] += partial[block * channels + c] } }
        return total
    }

    /// Sums per-channel values over every replica of a data-parallel job, in place (synchronised BatchNorm).
    package typealias ReplicaSum = (inout [Double]) -> Void

    /// Mean and biased variance of each channel (two passes, in Double), and the rows they are over: this map's, or
    /// with `replicas` every replica's together.
    package static func statistics(_ x: UnsafePointer<Float>, rows: Int, channels: Int, threads: Int,
                                  replicas: ReplicaSum? = nil) -> (mean: [Double], variance: [Double], rows: Int) {
        let xs = UncheckedSendable(x)
        var sums = channelSums(rows: rows, channels: channels, threads: threads) { row, sums in
            let p = xs.value + row * channels
            for c in 0..<channels { sums[c] += Double(p[c]) }
        }
        var total = Double(rows)
        if let replicas {
            var all = sums + [total]
            replicas(&all)
            (sums, total) = (Array(all.prefix(channels)), all[channels])
        }
        let mean = sums.map { $0 / total }
        var squares = channelSums(rows: rows, channels: channels, threads: threads) { row, sums in
            let p = xs.value + row * channels
            for c in 0..<channels { let d = Double(p[c]) - mean[c]; sums[c] += d * d }
        }
        replicas?(&squares)
        return (mean, squares.map { $0 / total }, Int(total))
    }

    /// y = activation(γ · (x − mean) · invStd + β).
    package static func normalize(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, rows: Int,
                                 channels: Int, mean: [Float], invStd: [Float], gamma: [Float], beta: [Float],
                                 relu: Bool, threads: Int) {
        let scale = (0..<channels).map { gamma[$0] * invStd[$0] }
        let shift = (0..<channels).map { beta[$0] - mean[$0] * scale[$0] }
        let (xs, ys) = (UncheckedSendable(x), UncheckedSendable(y))
        Parallel.parallelFor(rows, threads: threads, grain: 64) { row in
            let (p, q) = (xs.value + row * channels, ys.value + row * channels)
            for c in 0..<channels {
                let v = p[c] * scale[c] + shift[c]
                q[c] = relu ? max(0, v) : v
            }
        }
    }

    /// From ∂L/∂y (after the activation's backward): ∂L/∂x into `dx` (may be `dy`), and (∂L/∂γ, ∂L/∂β).
    ///   dx = γ · invStd · (dy − mean(dy) − x̂ · mean(dy · x̂)),  x̂ = (x − mean) · invStd
    package static func backward(_ dy: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                                into dx: UnsafeMutablePointer<Float>, rows: Int, channels: Int,
                                mean: [Float], invStd: [Float], gamma: [Float], threads: Int,
                                replicas: ReplicaSum? = nil, totalRows: Int? = nil)
        -> (gamma: [Float], beta: [Float]) {
        let (dys, xs, dxs) = (UncheckedSendable(dy), UncheckedSendable(x), UncheckedSendable(dx))
        let sumDy = channelSums(rows: rows, channels: channels, threads: threads) { row, sums in
            let d = dys.value + row * channels
            for c in 0..<channels { sums[c] += Double(d[c]) }
        }
        let sumDyXhat = channelSums(rows: rows, channels: channels, threads: threads) { row, sums in
            let (d, p) = (dys.value + row * channels, xs.value + row * channels)
            for c in 0..<channels { sums[c] += Double(d[c]) * Double((p[c] - mean[c]) * invStd[c]) }
        }
        // Synchronised: ∂L/∂x uses every replica's sums; γ's and β's gradients stay this replica's (the gradient
        // average adds them up, as for every other parameter).
        var (allDy, allDyXhat) = (sumDy, sumDyXhat)
        if let replicas {
            var all = sumDy + sumDyXhat
            replicas(&all)
            (allDy, allDyXhat) = (Array(all.prefix(channels)), Array(all.suffix(channels)))
        }
        let m = Double(totalRows ?? rows)
        let meanDy = allDy.map { Float($0 / m) }, meanDyXhat = allDyXhat.map { Float($0 / m) }
        let scale = (0..<channels).map { gamma[$0] * invStd[$0] }
        Parallel.parallelFor(rows, threads: threads, grain: 64) { row in
            let (d, p, out) = (dys.value + row * channels, xs.value + row * channels, dxs.value + row * channels)
            for c in 0..<channels {
                let xhat = (p[c] - mean[c]) * invStd[c]
                out[c] = scale[c] * (d[c] - meanDy[c] - xhat * meanDyXhat[c])
            }
        }
        return (sumDyXhat.map(Float.init), sumDy.map(Float.init))
    }
}

package enum ReLU {
    /// dy = 0 where the ReLU's output is 0.
    package static func mask(_ dy: UnsafeMutablePointer<Float>, output y: UnsafePointer<Float>, count: Int,
                            threads: Int) {
        let (dys, ys) = (UncheckedSendable(dy), UncheckedSendable(y))
        let block = 4096
        Parallel.parallelFor((count + block - 1) / block, threads: threads) { b in
            var i = b * block
            let end = min(count, (b + 1) * block)
            while i + 8 <= end {  // branch-free: a select per 8 lanes
                let out = UnsafeRawPointer(ys.value + i).loadUnaligned(as: SIMD8<Float>.self)
                var d = UnsafeRawPointer(dys.value + i).loadUnaligned(as: SIMD8<Float>.self)
                d.replace(with: 0, where: out .<= 0)
                UnsafeMutableRawPointer(dys.value + i).storeBytes(of: d, as: SIMD8<Float>.self)
                i += 8
            }
            for j in i..<end where ys.value[j] <= 0 { dys.value[j] = 0 }
        }
    }
}

package enum PoolingGradient {
    /// Channel blocks handled by one task: different channels never share an input element, so tasks never race.
    static func channelBlocks(_ c: Int) -> Int { (c + 15) / 16 }

    /// dX += dY routed to the first maximum of each window (PyTorch's choice on ties). With `routing`, each
    /// output's gradient goes where `routing` says instead: one flat index y · w + x per output element, in
    /// PyTorch's `return_indices` layout (`n × c × outH × outW`) — tests use it to take another implementation's
    /// choices where two inputs of a window are within rounding of each other.
    package static func maxPool(input x: FeatureMap, outputGradient dy: FeatureMap, inputGradient dx: FeatureMap,
                               kernel: Int, stride: Int, routing: [Int32]? = nil, threads: Int) {
        Parallel.parallelFor(channelBlocks(x.c), threads: threads) { block in
            let c0 = block * 16, cn = min(16, x.c - c0)
            for b in 0..<x.n { for oy in 0..<dy.h { for ox in 0..<dy.w {
                let d = dy.pixel(b, oy, ox) + c0
                if routing == nil && cn == 16 {
                    // 16 channels at once: the first maximum per lane (a NaN wins, as in the scalar loop).
                    for half in 0..<2 {
                        let c = c0 + half * 8
                        var best = SIMD8<Float>(repeating: -.infinity), at = SIMD8<Int32>(repeating: 0)
                        for ky in 0..<kernel { for kx in 0..<kernel {
                            let v = UnsafeRawPointer(x.pixel(b, oy * stride + ky, ox * stride + kx) + c)
                                .loadUnaligned(as: SIMD8<Float>.self)
                            let better = (v .> best) .| (v .!= v)
                            best.replace(with: v, where: better)
                            at.replace(with: Int32(ky * kernel + kx), where: better)
                        } }
                        for j in 0..<8 {
                            let (ky, kx) = (Int(at[j]) / kernel, Int(at[j]) % kernel)
                            dx.pixel(b, oy * stride + ky, ox * stride + kx)[c + j] += d[half * 8 + j]
                        }
                    }
                    continue
                }
                for j in 0..<cn {
                    if let routing {
                        let index = Int(routing[((b * x.c + c0 + j) * dy.h + oy) * dy.w + ox])
                        dx.pixel(b, index / x.w, index % x.w)[c0 + j] += d[j]
                        continue
                    }
                    var best = -Float.infinity, by = 0, bx = 0
                    for ky in 0..<kernel { for kx in 0..<kernel {
                        let v = x.pixel(b, oy * stride + ky, ox * stride + kx)[c0 + j]
                        if v > best || v.isNaN { (best, by, bx) = (v, ky, kx) }
                    } }
                    dx.pixel(b, oy * stride + by, ox * stride + bx)[c0 + j] += d[j]
                }
            } } }
        }
    }

    /// dX += dY spread evenly over each window's pixels inside the image (padding excluded from the divisor).
    package static func averagePool(outputGradient dy: FeatureMap, inputGradient dx: FeatureMap, kernel: Int,
                                   stride: Int, padding: Int, threads: Int) {
        Parallel.parallelFor(channelBlocks(dx.c), threads: threads) { block in
            let c0 = block * 16, cn = min(16, dx.c - c0)
            for b in 0..<dx.n { for oy in 0..<dy.h { for ox in 0..<dy.w {
                let y0 = max(0, oy * stride - padding), y1 = min(dx.h, oy * stride - padding + kernel)
                let x0 = max(0, ox * stride - padding), x1 = min(dx.w, ox * stride - padding + kernel)
                let inv = 1 / Float((y1 - y0) * (x1 - x0))
                let d = dy.pixel(b, oy, ox) + c0
                if cn == 16 {
                    let lo = UnsafeRawPointer(d).loadUnaligned(as: SIMD8<Float>.self) * inv
                    let hi = UnsafeRawPointer(d + 8).loadUnaligned(as: SIMD8<Float>.self) * inv
                    for iy in y0..<y1 { for ix in x0..<x1 {
                        let p = UnsafeMutableRawPointer(dx.pixel(b, iy, ix) + c0)
                        p.storeBytes(of: p.loadUnaligned(as: SIMD8<Float>.self) + lo, as: SIMD8<Float>.self)
                        p.storeBytes(of: p.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self) + hi,
                                     toByteOffset: 32, as: SIMD8<Float>.self)
                    } }
                    continue
                }
                for iy in y0..<y1 { for ix in x0..<x1 {
                    let p = dx.pixel(b, iy, ix) + c0
                    for j in 0..<cn { p[j] += d[j] * inv }
                } }
            } } }
        }
    }

    /// dX += dY / (h · w) at every pixel.
    package static func globalAveragePool(outputGradient dy: FeatureMap, inputGradient dx: FeatureMap, threads: Int) {
        let inv = 1 / Float(dx.h * dx.w)
        Parallel.parallelFor(dx.n, threads: threads) { b in
            let d = dy.pixel(b, 0, 0)
            for y in 0..<dx.h { for x in 0..<dx.w {
                let p = dx.pixel(b, y, x)
                for c in 0..<dx.c { p[c] += d[c] * inv }
            } }
        }
    }
}

package enum L2NormalizeGradient {
    /// y = x / max(‖x‖, 1e-12) per pixel; dX += (dY − y (y · dY)) / ‖x‖ (dY / 1e-12 where the floor applies).
    package static func backward(input x: FeatureMap, output y: FeatureMap, outputGradient dy: FeatureMap,
                                inputGradient dx: FeatureMap) {
        for b in 0..<x.n { for r in 0..<x.h { for col in 0..<x.w {
            let (p, q, d, out) = (x.pixel(b, r, col), y.pixel(b, r, col), dy.pixel(b, r, col), dx.pixel(b, r, col))
            var norm = 0.0, dot = 0.0
            for c in 0..<x.c { norm += Double(p[c]) * Double(p[c]); dot += Double(q[c]) * Double(d[c]) }
            norm = norm.squareRoot()
            if norm > 1e-12 {
                for c in 0..<x.c { out[c] += Float((Double(d[c]) - Double(q[c]) * dot) / norm) }
            } else {
                for c in 0..<x.c { out[c] += Float(Double(d[c]) / 1e-12) }
            }
        } } }
    }
}
