import Foundation
import InceptionKernels
/// Winograd minimal filtering (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016) for
/// stride-1 convolutions: an output tile of mH × mW pixels costs αH·αW multiplications per channel pair instead
/// of mH·mW·kH·kW (α = m + k − 1). Each axis has its own transform F(m, k), so one code path runs 3×3 layers as
/// F(4×4, 3×3) or F(6×6, 3×3) (4× and 5.1× fewer multiplications; the tile per layer from `forTaps` or the measured
/// table), 1×7 and 7×1 layers as F(1×1)·F(4, 7) (2.8× fewer), 1×3 and 3×1 as F(1×1)·F(4, 3), and so on.
///
/// Per layer: transform the input tiles (Bᵀ d B) into αH·αW matrices of `tiles × Cin`; multiply each by its
/// transformed weight matrix (G g Gᵀ, computed in Double and packed once at load) with the GEMM micro-kernel;
/// transform back (Aᵀ M A), adding bias and residual and applying ReLU as the pixels are stored.
///
/// Legend: ξ a point of the transform (`alpha` of them per axis), t a tile, j an input offset within a tile,
/// i an output offset within a tile.

/// The 1-D transform matrices of F(m, r), made by the Toom–Cook construction from α − 1 finite interpolation
/// points and the point at infinity: Aᵀ and G evaluate, Bᵀ is the transposed interpolation matrix. The scale
/// factors Π(p_ξ − p_l) are moved from Bᵀ into G, which is applied in Double at load time.
package struct WinogradTransform: Sendable, Hashable {
    package let m: Int, r: Int
    package var alpha: Int { m + r - 1 }
    /// Aᵀ, m × α.
    let outputTransform: [Double]
    /// G, α × r.
    let kernelTransform: [Double]
    /// Bᵀ, α × α.
    let inputTransform: [Double]

    package init(m: Int, r: Int, points: [Double]) {
        let alpha = m + r - 1
        precondition(points.count == alpha - 1, "F(\(m), \(r)) needs \(alpha - 1) finite points")
        self.m = m
        self.r = r
        // Evaluation of a polynomial of `degree + 1` coefficients at each point; ∞ picks the leading coefficient.
        func evaluation(_ columns: Int) -> [[Double]] {
            points.map { p in (0..<columns).map { Foundation.pow(p, Double($0)) } }
                + [(0..<columns).map { $0 == columns - 1 ? 1 : 0 }]
        }
        let eM = evaluation(m), eR = evaluation(r)
        let interpolation = invert(evaluation(alpha))  // C = V⁻¹
        let scale = points.indices.map { i in
            points.indices.filter { $0 != i }.reduce(1.0) { $0 * (points[i] - points[$1]) }
        } + [1]
        outputTransform = (0..<m).flatMap { i in (0..<alpha).map { eM[$0][i] } }
        kernelTransform = (0..<alpha).flatMap { xi in (0..<r).map { eR[xi][$0] / scale[xi] } }
        inputTransform = (0..<alpha).flatMap { xi in (0..<alpha).map { interpolation[$0][xi] * scale[xi] } }
    }

    /// Aᵀ[(G g) ⊙ (Bᵀ d)] in Double: the transform applied to one 1-D tile (for tests).
    package func apply(_ d: [Double], _ g: [Double]) -> [Double] {
        let v = (0..<alpha).map { x in (0..<alpha).reduce(0.0) { $0 + inputTransform[x * alpha + $1] * d[$1] } }
        let u = (0..<alpha).map { x in (0..<r).reduce(0.0) { $0 + kernelTransform[x * r + $1] * g[$1] } }
        return (0..<m).map { i in (0..<alpha).reduce(0.0) { $0 + outputTransform[i * alpha + $1] * u[$1] * v[$1] } }
    }

    /// The trivial transform of an axis the kernel does not extend along (k = 1).
    package static let identity = WinogradTransform(m: 1, r: 1, points: [])
    /// F(2, 3), F(4, 3) and F(6, 3) for 3-tap axes (F(6, 3) with the usual points 0, ±1, ±2, ±1/2, which also gave
    /// the smallest float32 error among the sets tried below), F(4, 7) for 7-tap axes. F(4, 7)'s ten points: of the
    /// sets 0, ±a, ±b, ±c, ±d drawn from {1/4, 1/3, 1/2, 2/3, 3/4, 4/5, 1, 5/4, 4/3, 3/2, 2, 3}, the one with the
    /// smallest float32 error in a simulation (about 2.3× F(2, 7)'s, which needs only 0, ±1, ±2, ±1/2; the usual
    /// 0, ±1, ±2, ±1/2, ±3 would be 3×). It does 28 multiplications in 10 and tiles 8- and 17-pixel sides with 2
    /// and 5 tiles.
    package static let f2x3 = WinogradTransform(m: 2, r: 3, points: [0, 1, -1])
    package static let f4x3 = WinogradTransform(m: 4, r: 3, points: [0, 1, -1, 2, -2])
    package static let f6x3 = WinogradTransform(m: 6, r: 3, points: [0, 1, -1, 2, -2, 0.5, -0.5])
    package static let f4x7 = WinogradTransform(m: 4, r: 7, points: [0, 0.5, -0.5, 2, -2, 1.25, -1.25, 0.8, -0.8])

    /// The transform this engine uses for an axis with `taps` taps and `side` output pixels (0 when not known), or
    /// nil where Winograd does not pay. For 3 taps, F(4, 3) or F(6, 3), whichever needs fewer points to cover the
    /// side, ⌈side / m⌉ · α (F(6, 3) at 17, 35, 36, 71 and 73 pixels, F(4, 3) at 8), with ties and unknown sides
    /// going to F(4, 3), which is about twice as accurate in float32.
    /// `tile` (2, 4 or 6) fixes the 3-tap transform instead, as a table measured on the running CPU does.
    package static func forTaps(_ taps: Int, side: Int = 0, tile: Int? = nil) -> WinogradTransform? {
        switch taps {
        case 1: return .identity
        case 3:
            if let tile { return [2: .f2x3, 4: .f4x3, 6: .f6x3][tile] }
            let points = { (t: WinogradTransform) in (side + t.m - 1) / t.m * t.alpha }
            return side > 0 && points(.f6x3) < points(.f4x3) ? .f6x3 : .f4x3
        case 7: return .f4x7
        default: return nil
        }
    }
}

/// Gauss–Jordan inversion with partial pivoting, in Double (matrices here are at most 10 × 10).
func invert(_ matrix: [[Double]]) -> [[Double]] {
    let n = matrix.count
    var a = matrix.enumerated().map { row in row.element + (0..<n).map { $0 == row.offset ? 1.0 : 0.0 } }
    for c in 0..<n {
        let pivot = (c..<n).max { abs(a[$0][c]) < abs(a[$1][c]) }!
        a.swapAt(c, pivot)
        let p = a[c][c]
        a[c] = a[c].map { $0 / p }
        for r in 0..<n where r != c {
            let f = a[r][c]
            if f != 0 { for k in 0..<(2 * n) { a[r][k] -= f * a[c][k] } }
        }
    }
    return a.map { Array($0[n...]) }
}

/// A stride-1 convolution run by Winograd's algorithm, weights transformed and packed at load. A class, not a
/// struct: as a struct carried in `CompiledConvolution`, its last stored property was never released (LeakSanitizer,
/// Swift 6.3.1, whichever member came last); one reference in the enum is released correctly.
package final class WinogradConvolution: Sendable {
    package let geometry: ConvGeometry
    package let activation: Activation
    package let vertical: WinogradTransform, horizontal: WinogradTransform
    /// Per transform point (αH·αW of them), the `Cin × Cout` transformed weights in 16-channel panels.
    let panels: [Float]
    let bias: [Float]
    /// Bᵀ of each axis, then Aᵀ of each axis, in Float: BᵀH (αH × αH), BᵀW (αW × αW), AᵀH (mH × αH), AᵀW (mW × αW).
    let coefficients: [Float]
    /// For the batched multiplies, which add no bias and write rows of Cout floats: zeros for every panel, and
    /// each panel's row stride.
    let zeroBias: [Float], productStrides: [Int]

    var points: Int { vertical.alpha * horizontal.alpha }
    var panelCount: Int { (geometry.outChannels + 15) / 16 }

    /// nil when the layer is not stride 1 or an axis has no transform. Weights OIHW; `scale` as in
    /// `PackedConvolution`. `outputSize`: the output map the layer usually makes, which picks each axis's transform
    /// (`WinogradTransform.forTaps`) unless `tile` fixes the 3-tap one; it runs correctly at any size.
    package init?(geometry g: ConvGeometry, weights: [Float], bias: [Float]?, scale: Float = 1, activation: Activation,
                 outputSize: (h: Int, w: Int) = (0, 0), tile: Int? = nil) {
        guard g.strideH == 1, g.strideW == 1,
              let v = WinogradTransform.forTaps(g.kernelH, side: outputSize.h, tile: tile),
              let h = WinogradTransform.forTaps(g.kernelW, side: outputSize.w, tile: tile), v.alpha * h.alpha > 1 else {
            return nil
        }
        (geometry, self.activation, vertical, horizontal) = (g, activation, v, h)
        let (cin, cout) = (g.inChannels, g.outChannels)
        let panelCount = (cout + 15) / 16, stride = panelCount * cin * 16
        var panels = [Float](repeating: 0, count: v.alpha * h.alpha * stride)
        for o in 0..<cout {
            for i in 0..<cin {
                // G g Gᵀ for this (output, input) pair, in Double.
                let base = (o * cin + i) * g.kernelH * g.kernelW
                for xh in 0..<v.alpha {
                    for xw in 0..<h.alpha {
                        var s = 0.0
                        for kh in 0..<g.kernelH {
                            for kw in 0..<g.kernelW {
                                s += v.kernelTransform[xh * v.r + kh] * h.kernelTransform[xw * h.r + kw]
                                    * Double(weights[base + kh * g.kernelW + kw])
                            }
                        }
                        panels[(xh * h.alpha + xw) * stride + ((o / 16) * cin + i) * 16 + o % 16] = Float(s) * scale
                    }
                }
            }
        }
        self.panels = panels
        var padded = [Float](repeating: 0, count: panelCount * 16)
        if let bias { for o in 0..<cout { padded[o] = bias[o] * scale } }
        self.bias = padded
        coefficients = (v.inputTransform + h.inputTransform + v.outputTransform + h.outputTransform).map(Float.init)
        zeroBias = [Float](repeating: 0, count: panelCount * 16)
        productStrides = [Int](repeating: cout, count: panelCount)
    }

    func tiles(n: Int, outH: Int, outW: Int) -> (count: Int, h: Int, w: Int) {
        let th = (outH + vertical.m - 1) / vertical.m, tw = (outW + horizontal.m - 1) / horizontal.m
        return (n * th * tw, th, tw)
    }

    /// Floats of scratch memory one call needs for an `n × h × w` input.
    package func scratchFloats(n: Int, h: Int, w: Int) -> Int {
        let (oh, ow) = geometry.outputSize(h: h, w: w)
        let t = tiles(n: n, outH: oh, outW: ow).count
        return points * t * (geometry.inChannels + geometry.outChannels)
    }

    /// What the three steps of one call share: the tiling, and where the transformed tiles and products live.
    struct Call {
        let input: FeatureMap, output: FeatureMap, residual: FeatureMap?
        let tileCount: Int, tilesH: Int, tilesW: Int
        /// [ξ][tile][Cin], then [ξ][tile][Cout], in the caller's scratch.
        let transformed: UncheckedSendable<UnsafeMutablePointer<Float>>
        let products: UncheckedSendable<UnsafeMutablePointer<Float>>
        let threads: Int, kernels: KernelTable
        /// The batched multiplies' register tile.
        let tile: TileShape
    }

    /// output = activation(residual + conv(input) + bias); `scratch` holds `scratchFloats` floats. `tile`: the
    /// batched multiplies' register tile (nil: the level's built-in one; any tile gives the same bits).
    package func run(input: FeatureMap, output: FeatureMap, residual: FeatureMap? = nil,
                    scratch: UnsafeMutablePointer<Float>, threads: Int,
                    kernels: KernelTable = Kernels.current, tile: TileShape? = nil) {
        let g = geometry
        let (outH, outW) = g.outputSize(h: input.h, w: input.w)
        precondition(input.c == g.inChannels && output.c == g.outChannels && output.n == input.n
                     && output.h == outH && output.w == outW, "convolution shapes disagree with \(g)")
        let (tileCount, tilesH, tilesW) = tiles(n: input.n, outH: outH, outW: outW)
        if tileCount == 0 { return }
        let call = Call(input: input, output: output, residual: residual, tileCount: tileCount, tilesH: tilesH,
                        tilesW: tilesW, transformed: UncheckedSendable(scratch),
                        products: UncheckedSendable(scratch + points * tileCount * g.inChannels),
                        threads: threads, kernels: kernels, tile: tile ?? kernels.builtInTile)
        let (aH, aW, mH) = (vertical.alpha, horizontal.alpha, vertical.m)
        coefficients.withUnsafeBufferPointer { c in
            let c = c.baseAddress!
            transformInput(call, bth: c, btw: c + aH * aH)
            multiplyPoints(call)
            transformOutput(call, ath: c + aH * aH + aW * aW, atw: c + aH * aH + aW * aW + mH * aH)
        }
    }

    /// 1. The input transform, a tile at a time (InceptionKernels' `winogradInputTile`, at the kernels' level).
    func transformInput(_ call: Call, bth: UnsafePointer<Float>, btw: UnsafePointer<Float>) {
        let g = geometry, input = call.input, (tilesH, tilesW, tileCount) = (call.tilesH, call.tilesW, call.tileCount)
        let (aH, aW, mH, mW, cin) = (vertical.alpha, horizontal.alpha, vertical.m, horizontal.m, g.inChannels)
        let (inputTile, transformed) = (call.kernels.winogradInput, call.transformed)
        let (bth, btw) = (UncheckedSendable(bth), UncheckedSendable(btw))
        Parallel.parallelFor(input.n * tilesH, threads: call.threads) { row in
            let (b, ty) = (row / tilesH, row % tilesH)
            let scratchBytes = WinogradInputTile.scratchBytes(alphaH: aH, alphaW: aW)
            withUnsafeTemporaryAllocation(byteCount: scratchBytes, alignment: 64) { tileScratch in
            withUnsafeTemporaryAllocation(of: UnsafePointer<Float>?.self, capacity: aH * aW) { pixelBuffer in
                let pixels = pixelBuffer.baseAddress!
                for tx in 0..<tilesW {
                    let tile = (b * tilesH + ty) * tilesW + tx
                    for jh in 0..<aH {
                        let iy = ty * mH - g.padH + jh
                        for jw in 0..<aW {
                            let ix = tx * mW - g.padW + jw
                            let inside = iy >= 0 && iy < input.h && ix >= 0 && ix < input.w
                            pixels[jh * aW + jw] = inside ? UnsafePointer(input.pixel(b, iy, ix)) : nil
                        }
                    }
                    inputTile(WinogradInputTile(
                        pixels: pixels, channels: cin, alphaH: aH, alphaW: aW, bth: bth.value, btw: btw.value,
                        destination: transformed.value + tile &* cin, pointStride: tileCount &* cin,
                        scratch: tileScratch.baseAddress!))
                }
            }
            }
        }
    }

    /// 2. One GEMM per transform point on the convolution micro-kernel: M[ξ] (tiles × Cout) = V[ξ] (tiles × Cin) ·
    /// U[ξ] (Cin × Cout).
    func multiplyPoints(_ call: Call) {
        let (cin, cout, points, tileCount) = (geometry.inChannels, geometry.outChannels, self.points, call.tileCount)
        let shape = call.tile, mr = shape.rows
        let microTiles = (tileCount + mr - 1) / mr
        let panelCount = self.panelCount
        let panelsPerTask = ConvGeometry.panelsPerTask(panelCount, panelBytes: cin * 64, group: shape.panels)
        let panelTasks = (panelCount + panelsPerTask - 1) / panelsPerTask
        var tilesPerTask = min(microTiles, 24)
        while tilesPerTask > 1
                && points * ((microTiles + tilesPerTask - 1) / tilesPerTask) * panelTasks < 4 * call.threads {
            tilesPerTask = (tilesPerTask + 1) / 2
        }
        let tileTasks = (microTiles + tilesPerTask - 1) / tilesPerTask
        let weightStride = panelCount * cin * 16
        let (kernel, transformed, products) = (call.kernels.convolution, call.transformed, call.products)
        panels.withUnsafeBufferPointer { panelBuffer in
        zeroBias.withUnsafeBufferPointer { noBias in
        productStrides.withUnsafeBufferPointer { strides in
            let panelBase = UncheckedSendable(panelBuffer.baseAddress!)
            let (noBias, strides) = (UncheckedSendable(noBias.baseAddress!), UncheckedSendable(strides.baseAddress!))
            Parallel.parallelFor(points * tileTasks * panelTasks, threads: call.threads) { task in
                let xi = task / (tileTasks * panelTasks), rest = task % (tileTasks * panelTasks)
                let (tileTask, panelTask) = (rest / panelTasks, rest % panelTasks)
                let firstPanel = panelTask * panelsPerTask, lastPanel = min(panelCount, firstPanel + panelsPerTask)
                withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: mr) { a in
                withUnsafeTemporaryAllocation(of: Int.self, capacity: mr) { pixels in
                withUnsafeTemporaryAllocation(of: UnsafeMutablePointer<Float>.self, capacity: panelCount) { bases in
                    let (a, pixels, bases) = (a.baseAddress!, pixels.baseAddress!, bases.baseAddress!)
                    // Row t of M[ξ], panel p: products[(ξ · tiles + t) · Cout + 16p ...].
                    for p in 0..<panelCount { bases[p] = products.value + xi * tileCount * cout + p * 16 }
                    for micro in (tileTask * tilesPerTask)..<min(microTiles, (tileTask + 1) * tilesPerTask) {
                        let first = micro * mr, valid = min(mr, tileCount - first)
                        for r in 0..<mr {
                            pixels[r] = first + min(r, valid - 1)
                            a[r] = UnsafePointer(transformed.value + (xi * tileCount + pixels[r]) * cin)
                        }
                        kernel(MicroKernelCall(a: a, taps: 1, channels: cin,
                                               weights: panelBase.value + xi * weightStride + firstPanel * cin * 16,
                                               panelFloats: cin * 16, firstPanel: firstPanel,
                                               panels: lastPanel - firstPanel,
                                               outChannels: cout, bias: noBias.value, outputBases: bases,
                                               outputStrides: strides.value, pixels: pixels, residual: nil, rows: valid,
                                               relu: false, shape: shape))
                    }
                }
                }
                }
            }
        }
        }
        }
    }

    /// 3. The output transform with bias, residual and activation, a tile at a time (`winogradOutputTile`).
    func transformOutput(_ call: Call, ath: UnsafePointer<Float>, atw: UnsafePointer<Float>) {
        let (output, residual, cout) = (call.output, call.residual, geometry.outChannels)
        let (tilesH, tilesW, tileCount) = (call.tilesH, call.tilesW, call.tileCount)
        let (aH, aW, mH, mW) = (vertical.alpha, horizontal.alpha, vertical.m, horizontal.m)
        let (outputTile, products, relu) = (call.kernels.winogradOutput, call.products, activation == .relu)
        let (ath, atw) = (UncheckedSendable(ath), UncheckedSendable(atw))
        bias.withUnsafeBufferPointer { biasBuffer in
            let biasBase = UncheckedSendable(biasBuffer.baseAddress!)
            Parallel.parallelFor(call.input.n * tilesH, threads: call.threads) { row in
                let (b, ty) = (row / tilesH, row % tilesH)
                let scratchBytes = WinogradOutputTile.scratchBytes(alphaH: aH, alphaW: aW, mW: mW)
                withUnsafeTemporaryAllocation(byteCount: scratchBytes, alignment: 64) { tileScratch in
                withUnsafeTemporaryAllocation(of: UnsafeMutablePointer<Float>?.self, capacity: 2 * mH * mW) { buffer in
                    let outputs = buffer.baseAddress!, residuals = outputs + mH * mW
                    for tx in 0..<tilesW {
                        let tile = (b * tilesH + ty) * tilesW + tx
                        for ih in 0..<mH {
                            for iw in 0..<mW {
                                let (oy, ox) = (ty &* mH &+ ih, tx &* mW &+ iw)
                                let inside = oy < output.h && ox < output.w
                                outputs[ih * mW + iw] = inside ? output.pixel(b, oy, ox) : nil
                                residuals[ih * mW + iw] = inside ? residual?.pixel(b, oy, ox) : nil
                            }
                        }
                        outputTile(WinogradOutputTile(
                            source: UnsafePointer(products.value + tile &* cout), pointStride: tileCount &* cout,
                            channels: cout, alphaH: aH, alphaW: aW, mH: mH, mW: mW, ath: ath.value, atw: atw.value,
                            bias: biasBase.value,
                            outputs: outputs, residuals: residual == nil ? nil : UnsafePointer(residuals), relu: relu,
                            scratch: tileScratch.baseAddress!))
                    }
                }
                }
            }
        }
    }
}
