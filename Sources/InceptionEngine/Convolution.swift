import InceptionKernels

/// Convolution as an implicit GEMM over NHWC feature maps: no im2col buffer is ever built.
///
///   rows    M = n·outH·outW output pixels
///   columns N = output channels
///   depth   K = kernelH·kernelW·inChannels, ordered (tap, channel), so for one tap the K-slice of a row is
///           the contiguous channel vector of one input pixel.
///
/// For each micro-tile of MR rows (the layer's `TileShape`: 3, 6 or 12, measured per layer on the running CPU) the
/// driver builds a table of row pointers, one per (tap, row) — an indirection table in the manner of XNNPACK —
/// pointing into the input or, for padding, at a row of zeros.
/// The micro-kernel walks those pointers against weights packed once at load into panels of NR = 16 output
/// channels, so every layer shape (1×1, 3×3, 1×7, 7×1, 1×3, 3×1, 5×5; stride 1 or 2; any padding) runs on
/// the same kernel. Bias (folded BatchNorm), a residual add and ReLU are applied as the tile is stored.
///
/// Kernel-loop legend: `t` tap, `k` input channel, `r` row of the micro-tile, `p` panel of 16 output
/// channels. The micro-kernel itself is in InceptionKernels (`convolutionRows`), compiled per instruction-set level.

package enum Activation: Sendable, Hashable {
    case identity
    case relu
}

/// Shape parameters of a 2-D convolution. Padding is symmetric (`padH` rows above and below).
package struct ConvGeometry: Sendable, Hashable {
    package var inChannels: Int, outChannels: Int
    package var kernelH: Int, kernelW: Int
    package var strideH: Int, strideW: Int
    package var padH: Int, padW: Int

    package init(inChannels: Int, outChannels: Int, kernel: (Int, Int), stride: (Int, Int) = (1, 1),
                padding: (Int, Int) = (0, 0)) {
        (self.inChannels, self.outChannels) = (inChannels, outChannels)
        (kernelH, kernelW) = kernel
        (strideH, strideW) = stride
        (padH, padW) = padding
    }

    package var taps: Int { kernelH * kernelW }
    package var depth: Int { taps * inChannels }

    /// Output size for an input of `h × w`; zero or negative when the input is too small.
    package func outputSize(h: Int, w: Int) -> (h: Int, w: Int) {
        let oh = h + 2 * padH - kernelH, ow = w + 2 * padW - kernelW
        return (oh < 0 ? 0 : oh / strideH + 1, ow < 0 ? 0 : ow / strideW + 1)
    }
}

/// A convolution ready to run: weights packed into 16-channel panels, bias and activation fixed.
package struct PackedConvolution: Sendable {
    package static let columnsPerPanel = 16

    package let geometry: ConvGeometry
    package let activation: Activation
    /// `panelCount` panels, each `depth × 16` floats: panel p, depth index d holds output channels
    /// 16p ..< 16p+16 (zero past outChannels).
    let panels: [Float]
    /// Per output channel, zero-padded to `panelCount × 16`.
    let bias: [Float]
    /// The register tile it runs with; nil: the kernel level's built-in one. Any tile gives the same bits.
    package var tile: TileShape?

    package var panelCount: Int { (geometry.outChannels + 15) / 16 }

    /// - Parameters:
    ///   - weights: OIHW (PyTorch layout), `outChannels × inChannels × kernelH × kernelW`.
    ///   - bias: per output channel, or nil for none.
    ///   - scale: multiplies the convolution's output, bias included (the residual scale of Inception-ResNet,
    ///     folded into the weights so the epilogue is a plain add).
    package init(geometry g: ConvGeometry, weights: [Float], bias: [Float]?, scale: Float = 1,
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
    package func run(input: FeatureMap, output: FeatureMap, residual: FeatureMap? = nil,
                    zeros: UnsafePointer<Float>, threads: Int, kernels: KernelTable = Kernels.current) {
        run(input: input, outputs: [output], residual: residual, zeros: zeros, threads: threads, kernels: kernels)
    }

    /// The output channels split over several maps, in order (sibling convolutions merged into one GEMM): every
    /// map but the last has a multiple of 16 channels, so each 16-channel panel belongs to one map.
    /// `kernels`: the instruction-set level to run at (tests run every level the CPU supports).
    package func run(input: FeatureMap, outputs: [FeatureMap], residual: FeatureMap? = nil,
                    zeros: UnsafePointer<Float>, threads: Int, kernels: KernelTable = Kernels.current) {
        let g = geometry
        g.checkShapes(input: input, outputs: outputs, residual: residual)
        let (panelBases, panelStrides) = Self.panelOutputs(outputs)
        let (kernel, depth, relu) = (kernels.convolution, g.depth, activation == .relu)
        let shape = tile ?? kernels.builtInTile
        panels.withUnsafeBufferPointer { w in
        bias.withUnsafeBufferPointer { bias in
        panelBases.withUnsafeBufferPointer { bases in
        panelStrides.withUnsafeBufferPointer { strides in
            let (w, bias) = (UncheckedSendable(w.baseAddress!), UncheckedSendable(bias.baseAddress!))
            let (bases, strides) = (UncheckedSendable(bases.baseAddress!), UncheckedSendable(strides.baseAddress!))
            g.forEachTile(input: input, output: outputs[0], residual: residual, zeros: zeros,
                          rows: shape.rows, panelGroup: shape.panels, panelBytes: depth * 16 * 4,
                          panelCount: panelCount,
                          threads: threads) { tile in
                kernel(MicroKernelCall(
                    a: tile.a, taps: tile.taps, channels: tile.channels,
                    weights: w.value + tile.panels.lowerBound * depth * 16, panelFloats: depth * 16,
                    firstPanel: tile.panels.lowerBound, panels: tile.panels.count, outChannels: g.outChannels,
                    bias: bias.value, outputBases: bases.value, outputStrides: strides.value,
                    pixels: tile.pixels, residual: tile.residualRows, rows: tile.rows, relu: relu, shape: shape))
            }
        }
        }
        }
        }
    }
}

extension PackedConvolution {
    /// Per panel of 16 output channels: the map it writes (at its first channel there) and that map's pixel stride.
    static func panelOutputs(_ outputs: [FeatureMap]) -> (bases: [UnsafeMutablePointer<Float>], strides: [Int]) {
        var bases: [UnsafeMutablePointer<Float>] = [], strides: [Int] = []
        for map in outputs {
            for q in stride(from: 0, to: map.c, by: 16) {
                bases.append(map.base + q)
                strides.append(map.pixelStride)
            }
        }
        return (bases, strides)
    }
}

/// One tile of an implicit GEMM, its indirection table filled: what `ConvGeometry.forEachTile` hands the kernel.
struct ImplicitTile {
    /// Per tap (`taps` of them) and row, a pointer at that row's input (`channels` contiguous values).
    var a: UnsafePointer<UnsafePointer<Float>>
    var taps: Int, channels: Int
    /// The output pixels of the tile's rows, and the residual's rows when there is one.
    var pixels: UnsafePointer<Int>
    var residualRows: UnsafePointer<UnsafeMutablePointer<Float>>?
    /// Valid rows (at most the tile's row count; the rest repeat the last valid one).
    var rows: Int
    var panels: Range<Int>
}

extension ConvGeometry {
    /// Traps unless `input` and `outputs` (the output channels in order, every map but the last a multiple of 16
    /// channels) fit this layer, with a residual only for a single output.
    func checkShapes(input: FeatureMap, outputs: [FeatureMap], residual: FeatureMap?) {
        let (outH, outW) = outputSize(h: input.h, w: input.w)
        precondition(input.c == inChannels && outputs.reduce(0, { $0 + $1.c }) == outChannels
                     && outputs.allSatisfy { $0.n == input.n && $0.h == outH && $0.w == outW }
                     && outputs.dropLast().allSatisfy { $0.c % 16 == 0 }, "convolution shapes disagree with \(self)")
        precondition(residual == nil || outputs.count == 1, "a residual needs a single output")
    }

    /// The implicit GEMM's schedule, shared by every precision: the output's pixels in tiles of `rows` rows × the
    /// panels of 16 output channels, split into tasks over `threads` (a task's panels — `panelBytes` each — should
    /// stay in L2 while its tiles stream past, a multiple of `panelGroup` of them, the panels one tile takes at
    /// once; then the tile range
    /// shrinks until every worker has a few tasks to balance), each tile's indirection table built for `body`. The
    /// input may be a view of words (several channels a word) as long as `inChannels` counts the same units.
    func forEachTile(input: FeatureMap, output: FeatureMap, residual: FeatureMap?, zeros: UnsafePointer<Float>,
                     rows mr: Int, panelGroup: Int, panelBytes: Int, panelCount: Int, threads: Int,
                     body: (ImplicitTile) -> Void) {
        let rows = output.pixels
        if rows == 0 { return }
        let (outH, outW) = (output.h, output.w)
        let tiles = (rows + mr - 1) / mr
        let panelsPerTask = Self.panelsPerTask(panelCount, panelBytes: panelBytes, group: panelGroup)
        let panelTasks = (panelCount + panelsPerTask - 1) / panelsPerTask
        var tilesPerTask = min(tiles, 24)
        while tilesPerTask > 1 && ((tiles + tilesPerTask - 1) / tilesPerTask) * panelTasks < 4 * threads {
            tilesPerTask = (tilesPerTask + 1) / 2
        }
        let tileTasks = (tiles + tilesPerTask - 1) / tilesPerTask
        let rowsContiguous = kernelW > 1 && input.pixelStride == inChannels
        let zeros = UncheckedSendable(zeros)
        Parallel.parallelFor(tileTasks * panelTasks, threads: threads) { task in
            let (tileTask, panelTask) = (task / panelTasks, task % panelTasks)
            let firstPanel = panelTask * panelsPerTask
            let panels = firstPanel..<min(panelCount, firstPanel + panelsPerTask)
            withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: taps * mr) { a in
            withUnsafeTemporaryAllocation(of: UnsafeMutablePointer<Float>.self, capacity: mr) { o in
            withUnsafeTemporaryAllocation(of: Int.self, capacity: 4 * mr) { pixelIndex in
                let a = a.baseAddress!, residualRows = o.baseAddress!
                // Per row of the tile: its output pixel index (b · outH + oy) · outW + ox, then b, oy, ox.
                let pixelIndex = pixelIndex.baseAddress!, coordinates = pixelIndex + mr
                for tile in (tileTask * tilesPerTask)..<min(tiles, (tileTask + 1) * tilesPerTask) {
                    let first = tile * mr
                    let valid = min(mr, rows - first)
                    let interior = indirection(
                        first: first, valid: valid, rows: mr, input: input, outH: outH, outW: outW,
                        residual: residual, zeros: zeros.value, contiguous: rowsContiguous, a: a,
                        residualRows: residualRows, pixels: pixelIndex, coordinates: coordinates)
                    let (tileTaps, tileChannels) = interior ? (kernelH, kernelW * inChannels) : (taps, inChannels)
                    body(ImplicitTile(a: a, taps: tileTaps, channels: tileChannels, pixels: pixelIndex,
                                      residualRows: residual == nil ? nil : residualRows, rows: valid,
                                      panels: panels))
                }
            }
            }
            }
        }
    }

    /// Panels per task: as many as stay in L2 (192 KB of weights), at least and a multiple of the `group` a tile
    /// takes at once.
    static func panelsPerTask(_ panelCount: Int, panelBytes: Int, group: Int) -> Int {
        let fit = max(group, min(panelCount, (192 * 1024) / panelBytes))
        return max(1, min(panelCount, fit / group * group))
    }

    /// Fills one tile's indirection table `a` — per tap and row, a pointer into the input, or at `zeros` where the
    /// tap reads padding — its rows' output pixels (`pixels`, with b, oy, ox in `coordinates`) and, with a residual,
    /// the rows of it to add. Rows past `valid` repeat the last valid row; their results are not stored. Returns
    /// whether every row reads only inside the input: then (when `contiguous`) `a` has one entry per kernel row,
    /// kernelW · inChannels contiguous floats — the packed weights have the same order — so the tile runs kernelH
    /// taps of that depth instead of kernelH · kernelW short ones: the same products summed in the same order, with
    /// less loop overhead.
    @inline(__always)
    func indirection(first: Int, valid: Int, rows mr: Int, input: FeatureMap, outH: Int, outW: Int,
                     residual: FeatureMap?, zeros: UnsafePointer<Float>, contiguous: Bool,
                     a: UnsafeMutablePointer<UnsafePointer<Float>>,
                     residualRows: UnsafeMutablePointer<UnsafeMutablePointer<Float>>,
                     pixels: UnsafeMutablePointer<Int>, coordinates: UnsafeMutablePointer<Int>) -> Bool {
        let g = self
        var interior = contiguous
        // One division for the tile's first row, then step along the row of the map (a division per row costs as
        // much as the arithmetic of a short-depth 1×1 tile).
        var b = first / (outH * outW), oy = (first - b * outH * outW) / outW
        var ox = first - (b * outH + oy) * outW
        for r in 0..<mr {
            if r > 0 && r < valid {
                ox += 1
                if ox == outW { (ox, oy) = (0, oy + 1) }
                if oy == outH { (oy, b) = (0, b + 1) }
            }
            pixels[r] = first + min(r, valid - 1)
            (coordinates[3 * r], coordinates[3 * r + 1], coordinates[3 * r + 2]) = (b, oy, ox)
            let iy0 = oy * g.strideH - g.padH, ix0 = ox * g.strideW - g.padW
            interior = interior && iy0 >= 0 && iy0 + g.kernelH <= input.h && ix0 >= 0 && ix0 + g.kernelW <= input.w
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
                    a[(ky * g.kernelW + kx) * mr + r] = (iy >= 0 && iy < input.h && ix >= 0 && ix < input.w)
                        ? UnsafePointer(input.pixel(b, iy, ix)) : zeros
                }
            }
        }
        return interior
    }
}
