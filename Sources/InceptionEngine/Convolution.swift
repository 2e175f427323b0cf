/// Convolution as an implicit GEMM over NHWC feature maps: no im2col buffer is ever built.
///
///   rows    M = n·outH·outW output pixels
///   columns N = output channels
///   depth   K = kernelH·kernelW·inChannels, ordered (tap, channel), so for one tap the K-slice of a row is
///           the contiguous channel vector of one input pixel.
///
/// For each micro-tile of MR = 6 rows the driver builds a table of row pointers, one per (tap, row) — an
/// indirection table in the manner of XNNPACK — pointing into the input or, for padding, at a row of zeros.
/// The micro-kernel walks those pointers against weights packed once at load into panels of NR = 16 output
/// channels, so every layer shape (1×1, 3×3, 1×7, 7×1, 1×3, 3×1, 5×5; stride 1 or 2; any padding) runs on
/// the same kernel. Bias (folded BatchNorm), a residual add and ReLU are applied as the tile is stored.
///
/// Kernel-loop legend: `t` tap, `k` input channel, `r` row of the micro-tile, `p` panel of 16 output
/// channels, `cRJ` the accumulator of row R, columns 8J ..< 8J+8 of the panel.

public enum Activation: Sendable, Hashable {
    case identity
    case relu
}

/// Shape parameters of a 2-D convolution. Padding is symmetric (`padH` rows above and below).
public struct ConvGeometry: Sendable, Hashable {
    public var inChannels: Int, outChannels: Int
    public var kernelH: Int, kernelW: Int
    public var strideH: Int, strideW: Int
    public var padH: Int, padW: Int

    public init(inChannels: Int, outChannels: Int, kernel: (Int, Int), stride: (Int, Int) = (1, 1),
                padding: (Int, Int) = (0, 0)) {
        (self.inChannels, self.outChannels) = (inChannels, outChannels)
        (kernelH, kernelW) = kernel
        (strideH, strideW) = stride
        (padH, padW) = padding
    }

    public var taps: Int { kernelH * kernelW }
    public var depth: Int { taps * inChannels }

    /// Output size for an input of `h × w`; zero or negative when the input is too small.
    public func outputSize(h: Int, w: Int) -> (h: Int, w: Int) {
        let oh = h + 2 * padH - kernelH, ow = w + 2 * padW - kernelW
        return (oh < 0 ? 0 : oh / strideH + 1, ow < 0 ? 0 : ow / strideW + 1)
    }
}

/// A convolution ready to run: weights packed into 16-channel panels, bias and activation fixed.
public struct PackedConvolution: Sendable {
    public static let rowsPerTile = 6
    public static let columnsPerPanel = 16

    public let geometry: ConvGeometry
    public let activation: Activation
    /// `panelCount` panels, each `depth × 16` floats: panel p, depth index d holds output channels
    /// 16p ..< 16p+16 (zero past outChannels).
    let panels: [Float]
    /// Per output channel, zero-padded to `panelCount × 16`.
    let bias: [Float]

    public var panelCount: Int { (geometry.outChannels + 15) / 16 }

    /// - Parameters:
    ///   - weights: OIHW (PyTorch layout), `outChannels × inChannels × kernelH × kernelW`.
    ///   - bias: per output channel, or nil for none.
    ///   - scale: multiplies the convolution's output, bias included (the residual scale of Inception-ResNet,
    ///     folded into the weights so the epilogue is a plain add).
    public init(geometry g: ConvGeometry, weights: [Float], bias: [Float]?, scale: Float = 1,
                activation: Activation, threads: Int = 1) {
        precondition(weights.count == g.outChannels * g.depth, "weights do not match \(g)")
        precondition(bias == nil || bias!.count == g.outChannels, "bias does not match \(g)")
        let panels = weights.withUnsafeBufferPointer { w in
            let (taps, perOutput) = (g.taps, g.inChannels * g.taps)
            return Self.pack(g, threads: threads) { o, i, tap in w[o &* perOutput &+ i &* taps &+ tap] * scale }
        }
        var paddedBias = [Float](repeating: 0, count: (g.outChannels + 15) / 16 * 16)
        if let bias { for o in 0..<g.outChannels { paddedBias[o] = bias[o] * scale } }
        self.init(geometry: g, activation: activation, panels: panels, bias: paddedBias)
    }

    init(geometry: ConvGeometry, activation: Activation, panels: [Float], bias: [Float]) {
        (self.geometry, self.activation, self.panels, self.bias) = (geometry, activation, panels, bias)
    }

    /// Weights in panel layout, `weight(o, i, tap)` for output channel o, input channel i and tap `ky · kernelW + kx`,
    /// the panels packed in parallel.
    @inline(__always)
    static func pack(_ g: ConvGeometry, threads: Int, _ weight: (_ o: Int, _ i: Int, _ tap: Int) -> Float) -> [Float] {
        let panelCount = (g.outChannels + 15) / 16, depth = g.depth
        return [Float](unsafeUninitializedCapacity: panelCount * depth * 16) { buffer, count in
            let base = UncheckedSendable(buffer.baseAddress!)
            Parallel.parallelFor(panelCount, threads: threads) { p in
                var out = base.value + p &* depth &* 16
                let lanes = min(16, g.outChannels - p * 16)
                for tap in 0..<g.taps {
                    for i in 0..<g.inChannels {
                        for lane in 0..<lanes { out[lane] = weight(p &* 16 &+ lane, i, tap) }
                        for lane in lanes..<16 { out[lane] = 0 }
                        out += 16
                    }
                }
            }
            count = panelCount * depth * 16
        }
    }

    /// output = activation(residual + conv(input) + bias). `zeros` must hold at least `inChannels` zeros.
    public func run(input: FeatureMap, output: FeatureMap, residual: FeatureMap? = nil,
                    zeros: UnsafePointer<Float>, threads: Int) {
        run(input: input, outputs: [output], residual: residual, zeros: zeros, threads: threads)
    }

    /// The output channels split over several maps, in order (sibling convolutions merged into one GEMM): every
    /// map but the last has a multiple of 16 channels, so each 16-channel panel belongs to one map.
    public func run(input: FeatureMap, outputs: [FeatureMap], residual: FeatureMap? = nil,
                    zeros: UnsafePointer<Float>, threads: Int) {
        let g = geometry
        let (outH, outW) = g.outputSize(h: input.h, w: input.w)
        precondition(input.c == g.inChannels && outputs.reduce(0, { $0 + $1.c }) == g.outChannels
                     && outputs.allSatisfy { $0.n == input.n && $0.h == outH && $0.w == outW }
                     && outputs.dropLast().allSatisfy { $0.c % 16 == 0 }, "convolution shapes disagree with \(g)")
        precondition(residual == nil || outputs.count == 1, "a residual needs a single output")
        // Per panel: the map it writes and its first channel there.
        var panelBases: [UnsafeMutablePointer<Float>] = [], panelStrides: [Int] = []
        for map in outputs {
            for q in stride(from: 0, to: map.c, by: 16) {
                panelBases.append(map.base + q)
                panelStrides.append(map.pixelStride)
            }
        }
        let output = outputs[0]
        let rows = output.pixels
        if rows == 0 { return }
        let mr = Self.rowsPerTile
        let tiles = (rows + mr - 1) / mr
        let panelCount = self.panelCount
        // A task covers some tiles × some panels. Its panels (depth × 16 floats each) should stay in L2 while
        // the tiles stream past; then shrink the tile range until every worker has a few tasks to balance.
        let panelBytes = g.depth * 16 * 4
        let panelsPerTask = max(1, min(panelCount, (192 * 1024) / panelBytes))
        let panelTasks = (panelCount + panelsPerTask - 1) / panelsPerTask
        var tilesPerTask = min(tiles, 24)
        while tilesPerTask > 1 && ((tiles + tilesPerTask - 1) / tilesPerTask) * panelTasks < 4 * threads {
            tilesPerTask = (tilesPerTask + 1) / 2
        }
        let tileTasks = (tiles + tilesPerTask - 1) / tilesPerTask
        let taps = g.taps
        let rowsContiguous = g.kernelW > 1 && input.pixelStride == g.inChannels

        panels.withUnsafeBufferPointer { panelBuffer in
        bias.withUnsafeBufferPointer { biasBuffer in
        panelBases.withUnsafeBufferPointer { panelBases in
        panelStrides.withUnsafeBufferPointer { panelStrides in
                let panelBase = UncheckedSendable(panelBuffer.baseAddress!)
                let biasBase = UncheckedSendable(biasBuffer.baseAddress!)
                let outBases = UncheckedSendable(panelBases.baseAddress!), outStrides = UncheckedSendable(panelStrides.baseAddress!)
                Parallel.parallelFor(tileTasks * panelTasks, threads: threads) { task in
                    let (tileTask, panelTask) = (task / panelTasks, task % panelTasks)
                    let firstPanel = panelTask * panelsPerTask
                    let lastPanel = min(panelCount, firstPanel + panelsPerTask)
                    withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: taps * mr) { a in
                    withUnsafeTemporaryAllocation(of: UnsafeMutablePointer<Float>.self, capacity: 2 * mr) { o in
                    withUnsafeTemporaryAllocation(of: Int.self, capacity: 4 * mr) { pixelIndex in
                        let a = a.baseAddress!, outRows = o.baseAddress!, residualRows = outRows + mr
                        // Per row of the tile: its output pixel index (b · outH + oy) · outW + ox, then b, oy, ox.
                        let pixelIndex = pixelIndex.baseAddress!, coordinates = pixelIndex + mr
                        for tile in (tileTask * tilesPerTask)..<min(tiles, (tileTask + 1) * tilesPerTask) {
                            let first = tile * mr
                            let valid = min(mr, rows - first)
                            // A tile whose every row reads only inside the input (no padding) reads each kernel
                            // row as one run of kernelW · inChannels contiguous floats — the packed weights have the
                            // same order — so it runs kernelH taps of that depth instead of kernelH · kernelW short
                            // ones: the same products summed in the same order, with less loop overhead.
                            var interior = rowsContiguous
                            // One division for the tile's first row, then step along the row of the map (a division
                            // per row costs as much as the arithmetic of a short-depth 1×1 tile).
                            var b = first / (outH * outW), oy = (first - b * outH * outW) / outW
                            var ox = first - (b * outH + oy) * outW
                            for r in 0..<mr {
                                // Rows past the end repeat the last valid row; their results are not stored.
                                if r > 0 && r < valid {
                                    ox += 1
                                    if ox == outW { (ox, oy) = (0, oy + 1) }
                                    if oy == outH { (oy, b) = (0, b + 1) }
                                }
                                pixelIndex[r] = first + min(r, valid - 1)
                                (coordinates[3 * r], coordinates[3 * r + 1], coordinates[3 * r + 2]) = (b, oy, ox)
                                let iy0 = oy * g.strideH - g.padH, ix0 = ox * g.strideW - g.padW
                                interior = interior && iy0 >= 0 && iy0 + g.kernelH <= input.h && ix0 >= 0
                                    && ix0 + g.kernelW <= input.w
                            }
                            for r in 0..<mr {
                                let (b, oy, ox) = (coordinates[3 * r], coordinates[3 * r + 1], coordinates[3 * r + 2])
                                if let residual { residualRows[r] = residual.pixel(b, oy, ox) }
                                for ky in 0..<g.kernelH {
                                    let iy = oy * g.strideH - g.padH + ky
                                    if interior {
                                        a[ky * mr + r] = UnsafePointer(input.pixel(b, iy, ox * g.strideW - g.padW))
                                        continue
                                    }
                                    for kx in 0..<g.kernelW {
                                        let ix = ox * g.strideW - g.padW + kx
                                        let t = ky * g.kernelW + kx
                                        a[t * mr + r] = (iy >= 0 && iy < input.h && ix >= 0 && ix < input.w)
                                            ? UnsafePointer(input.pixel(b, iy, ix)) : zeros
                                    }
                                }
                            }
                            let (tileTaps, tileChannels) = interior ? (g.kernelH, g.kernelW * g.inChannels) : (taps, g.inChannels)
                            for p in firstPanel..<lastPanel {
                                let columns = min(16, g.outChannels - p * 16)
                                let (outBase, outStride) = (outBases.value[p], outStrides.value[p])
                                for r in 0..<mr {
                                    outRows[r] = outBase + pixelIndex[r] * outStride
                                    if residual != nil { residualRows[r] += p * 16 }
                                }
                                convolutionMicroKernel(
                                    a, taps: tileTaps, channels: tileChannels,
                                    weights: panelBase.value + p * g.depth * 16, bias: biasBase.value + p * 16,
                                    output: outRows, residual: residual == nil ? nil : residualRows,
                                    rows: valid, columns: columns, relu: activation == .relu)
                                if residual != nil { for r in 0..<mr { residualRows[r] -= p * 16 } }
                            }
                        }
                    }
                    }
                    }
                }
        }
        }
        }
        }
    }
}

/// The 6×16 micro-kernel: 12 SIMD8 accumulators, one broadcast of an input value and two weight vectors
/// per step, then the fused epilogue. Needs FMA code generation (see Package.swift). A tile of at most three
/// valid rows (the last tile of a small map: 9 = 6 + 3 rows at 3×3) runs a 3×16 variant instead of computing
/// rows it would throw away.
@inline(__always)
func convolutionMicroKernel(
    _ a: UnsafePointer<UnsafePointer<Float>>, taps: Int, channels: Int,
    weights: UnsafePointer<Float>, bias: UnsafePointer<Float>,
    output: UnsafePointer<UnsafeMutablePointer<Float>>, residual: UnsafePointer<UnsafeMutablePointer<Float>>?,
    rows: Int, columns: Int, relu: Bool
) {
    if rows <= 3 {
        microKernel(tileRows: 3, a, taps: taps, channels: channels, weights: weights, bias: bias, output: output,
                    residual: residual, rows: rows, columns: columns, relu: relu)
    } else {
        microKernel(tileRows: 6, a, taps: taps, channels: channels, weights: weights, bias: bias, output: output,
                    residual: residual, rows: rows, columns: columns, relu: relu)
    }
}

/// `tileRows` (3 or 6, a constant at each call) rows × 16 columns; the indirection table `a` has 6 entries per tap.
@inline(__always)
private func microKernel(
    tileRows: Int, _ a: UnsafePointer<UnsafePointer<Float>>, taps: Int, channels: Int,
    weights: UnsafePointer<Float>, bias: UnsafePointer<Float>,
    output: UnsafePointer<UnsafeMutablePointer<Float>>, residual: UnsafePointer<UnsafeMutablePointer<Float>>?,
    rows: Int, columns: Int, relu: Bool
) {
    typealias V = SIMD8<Float>
    var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V()
    var c30 = V(), c31 = V(), c40 = V(), c41 = V(), c50 = V(), c51 = V()
    var w = UnsafeRawPointer(weights)
    let full = tileRows == 6
    for t in 0..<taps {
        let a0 = a[t * 6], a1 = a[t * 6 + 1], a2 = a[t * 6 + 2]
        let a3 = full ? a[t * 6 + 3] : a0, a4 = full ? a[t * 6 + 4] : a0, a5 = full ? a[t * 6 + 5] : a0
        for k in 0..<channels {
            let w0 = w.loadUnaligned(as: V.self)
            let w1 = w.loadUnaligned(fromByteOffset: 32, as: V.self)
            w += 64
            var x = V(repeating: a0[k])
            c00 = c00.addingProduct(x, w0); c01 = c01.addingProduct(x, w1)
            x = V(repeating: a1[k])
            c10 = c10.addingProduct(x, w0); c11 = c11.addingProduct(x, w1)
            x = V(repeating: a2[k])
            c20 = c20.addingProduct(x, w0); c21 = c21.addingProduct(x, w1)
            if full {
                x = V(repeating: a3[k])
                c30 = c30.addingProduct(x, w0); c31 = c31.addingProduct(x, w1)
                x = V(repeating: a4[k])
                c40 = c40.addingProduct(x, w0); c41 = c41.addingProduct(x, w1)
                x = V(repeating: a5[k])
                c50 = c50.addingProduct(x, w0); c51 = c51.addingProduct(x, w1)
            }
        }
    }
    let b0 = UnsafeRawPointer(bias).loadUnaligned(as: V.self)
    let b1 = UnsafeRawPointer(bias).loadUnaligned(fromByteOffset: 32, as: V.self)
    storeTile(c00 + b0, c01 + b1, output[0], residual?[0], columns, relu)
    if rows > 1 { storeTile(c10 + b0, c11 + b1, output[1], residual?[1], columns, relu) }
    if rows > 2 { storeTile(c20 + b0, c21 + b1, output[2], residual?[2], columns, relu) }
    if full {
        if rows > 3 { storeTile(c30 + b0, c31 + b1, output[3], residual?[3], columns, relu) }
        if rows > 4 { storeTile(c40 + b0, c41 + b1, output[4], residual?[4], columns, relu) }
        if rows > 5 { storeTile(c50 + b0, c51 + b1, output[5], residual?[5], columns, relu) }
    }
}

@inline(__always)
func storeTile(_ lo: SIMD8<Float>, _ hi: SIMD8<Float>, _ out: UnsafeMutablePointer<Float>,
               _ residual: UnsafeMutablePointer<Float>?, _ columns: Int, _ relu: Bool) {
    typealias V = SIMD8<Float>
    var (lo, hi) = (lo, hi)
    if let residual {
        if columns == 16 {
            lo += UnsafeRawPointer(residual).loadUnaligned(as: V.self)
            hi += UnsafeRawPointer(residual).loadUnaligned(fromByteOffset: 32, as: V.self)
        } else {
            for j in 0..<columns { if j < 8 { lo[j] += residual[j] } else { hi[j - 8] += residual[j] } }
        }
    }
    if relu {
        lo = lo.replacing(with: 0, where: lo .< 0)
        hi = hi.replacing(with: 0, where: hi .< 0)
    }
    if columns == 16 {
        UnsafeMutableRawPointer(out).storeBytes(of: lo, as: V.self)
        UnsafeMutableRawPointer(out).storeBytes(of: hi, toByteOffset: 32, as: V.self)
    } else {
        for j in 0..<columns { out[j] = j < 8 ? lo[j] : hi[j - 8] }
    }
}
