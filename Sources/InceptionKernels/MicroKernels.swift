/// One tile of a convolution as an implicit GEMM: `rows` output pixels (at most the level's `tileRows`) × the
/// panels `firstPanel ..< firstPanel + panels` of 16 output channels, over `taps` indirection entries of `channels`
/// input values each, contiguous.
/// `a[t · tileRows + r]` points at row r's input for tap t (or at zeros, for padding);
/// panel p's weights are `taps · channels × 16` floats at `weights + (p − firstPanel) · panelFloats`. Row r is output
/// pixel `pixels[r]`; panel p of it is stored at `outputBases[p] + pixels[r] · outputStrides[p]` (sibling
/// convolutions merged into one GEMM write to different maps). The epilogue adds the bias (`bias[16p ...]`) and the
/// residual (`residual[r] + 16p`), applies ReLU and stores the panel's channels that exist (≤ 16).
public struct ConvolutionTile {
    public var a: UnsafePointer<UnsafePointer<Float>>
    public var taps: Int, channels: Int
    public var weights: UnsafePointer<Float>, panelFloats: Int
    public var firstPanel: Int, panels: Int, outChannels: Int
    public var bias: UnsafePointer<Float>
    public var outputBases: UnsafePointer<UnsafeMutablePointer<Float>>, outputStrides: UnsafePointer<Int>
    public var pixels: UnsafePointer<Int>
    public var residual: UnsafePointer<UnsafeMutablePointer<Float>>?
    public var rows: Int
    public var relu: Bool

    @inlinable
    public init(a: UnsafePointer<UnsafePointer<Float>>, taps: Int, channels: Int, weights: UnsafePointer<Float>,
                panelFloats: Int, firstPanel: Int, panels: Int, outChannels: Int, bias: UnsafePointer<Float>,
                outputBases: UnsafePointer<UnsafeMutablePointer<Float>>, outputStrides: UnsafePointer<Int>,
                pixels: UnsafePointer<Int>, residual: UnsafePointer<UnsafeMutablePointer<Float>>?, rows: Int,
                relu: Bool) {
        (self.a, self.taps, self.channels, self.weights, self.panelFloats) = (a, taps, channels, weights, panelFloats)
        (self.firstPanel, self.panels, self.outChannels, self.bias) = (firstPanel, panels, outChannels, bias)
        (self.outputBases, self.outputStrides, self.pixels) = (outputBases, outputStrides, pixels)
        (self.residual, self.rows, self.relu) = (residual, rows, relu)
    }
}

/// Runs the tile at the level's row count, or at a quarter / half of it when few rows are valid (the last tile of a
/// small map), so that rows which would be thrown away are not computed.
@inlinable
func convolutionTile<L: KernelLevel>(_ level: L.Type, _ t: ConvolutionTile) {
    if L.tileRows == 6 {
        if t.rows <= 3 {
            convolutionRows(L.self, Rows3.self, Contiguous.self, stride: 6, t)
        } else {
            convolutionRows(L.self, Rows6.self, Contiguous.self, stride: 6, t)
        }
    } else {
        precondition(L.tileRows == 3, "tiles of 3 or 6 rows")
        convolutionRows(L.self, Rows3.self, Contiguous.self, stride: 3, t)
    }
}

/// A tile's row count as a type, so that each specialisation of `convolutionRows` has it as a constant and keeps
/// only the accumulators it uses in registers (a count passed as a value kept them all, spilling at AVX2). A 12-row
/// tile for AVX-512's 32 registers ran inception_v4 slower on Zen 4 (118–145 against 96–106 ms) and was removed.
public protocol TileRows { static var count: Int { get } }
public enum Rows3: TileRows { @inlinable public static var count: Int { 3 } }
public enum Rows6: TileRows { @inlinable public static var count: Int { 6 } }

/// How far apart a row's successive input values lie, as a type for the same reason: a step passed as a value
/// needed a register per row for the unrolled loop's second value and spilled. 1 in a convolution's rows; 6 in
/// GEMM's packed strips, where the six rows' values of one depth index sit side by side.
public protocol RowStep { static var floats: Int { get } }
public enum Contiguous: RowStep { @inlinable public static var floats: Int { 1 } }
public enum Strip6: RowStep { @inlinable public static var floats: Int { 6 } }

/// The one micro-kernel of the engine — convolution, Winograd's batched multiplies and GEMM all run it:
/// `R.count` (3 or 6) rows × 16 columns for each panel; the indirection table has `stride` entries per tap.
/// Accumulator `cR` is row R of the panel.
@inlinable
func convolutionRows<L: KernelLevel, R: TileRows, S: RowStep>(_ level: L.Type, _ tileRows: R.Type, _ step: S.Type,
                                                               stride: Int, _ t: ConvolutionTile) {
    typealias V = SIMD16<Float>
    let rows = R.count
    for q in 0..<t.panels {
        let p = t.firstPanel &+ q
        var c0 = V(), c1 = V(), c2 = V(), c3 = V(), c4 = V(), c5 = V()
        var w = UnsafeRawPointer(t.weights + q &* t.panelFloats)
        for tap in 0..<t.taps {
            let row = t.a + tap &* stride
            let a0 = row[0], a1 = row[1], a2 = row[2]
            let a3 = rows > 3 ? row[3] : a0, a4 = rows > 3 ? row[4] : a0, a5 = rows > 3 ? row[5] : a0
            var i = 0
            for _ in 0..<t.channels {
                let wk = w.loadUnaligned(as: V.self)
                w += 64
                c0 = multiplyAdd(L.self, c0, V(repeating: a0[i]), wk)
                c1 = multiplyAdd(L.self, c1, V(repeating: a1[i]), wk)
                c2 = multiplyAdd(L.self, c2, V(repeating: a2[i]), wk)
                if rows > 3 {
                    c3 = multiplyAdd(L.self, c3, V(repeating: a3[i]), wk)
                    c4 = multiplyAdd(L.self, c4, V(repeating: a4[i]), wk)
                    c5 = multiplyAdd(L.self, c5, V(repeating: a5[i]), wk)
                }
                i &+= S.floats
            }
        }
        let bias = UnsafeRawPointer(t.bias + p &* 16).loadUnaligned(as: V.self)
        let (base, pixelStride, columns) = (t.outputBases[p], t.outputStrides[p], min(16, t.outChannels &- p &* 16))
        storeRow(c0 + bias, 0, t, base, pixelStride, p, columns)
        if t.rows > 1 { storeRow(c1 + bias, 1, t, base, pixelStride, p, columns) }
        if t.rows > 2 { storeRow(c2 + bias, 2, t, base, pixelStride, p, columns) }
        if rows > 3 {
            if t.rows > 3 { storeRow(c3 + bias, 3, t, base, pixelStride, p, columns) }
            if t.rows > 4 { storeRow(c4 + bias, 4, t, base, pixelStride, p, columns) }
            if t.rows > 5 { storeRow(c5 + bias, 5, t, base, pixelStride, p, columns) }
        }
    }
}

/// Row `r` of panel `p`'s tile to its output pixel.
@inlinable @inline(__always)
func storeRow(_ value: SIMD16<Float>, _ r: Int, _ t: ConvolutionTile, _ base: UnsafeMutablePointer<Float>,
              _ pixelStride: Int, _ p: Int, _ columns: Int) {
    storeRow(value, base + t.pixels[r] &* pixelStride, t.residual.map { $0[r] + p &* 16 }, columns, t.relu)
}

/// Stores one row of a tile: + residual, ReLU, the first `columns` lanes. Also the reduced-precision epilogue's
/// (InceptionEngine's `ReducedConvolution`).
@inlinable @inline(__always)
public func storeRow(_ value: SIMD16<Float>, _ out: UnsafeMutablePointer<Float>,
                     _ residual: UnsafeMutablePointer<Float>?, _ columns: Int, _ relu: Bool) {
    var v = value
    if let residual {
        if columns == 16 {
            v += UnsafeRawPointer(residual).loadUnaligned(as: SIMD16<Float>.self)
        } else {
            for j in 0..<columns { v[j] += residual[j] }
        }
    }
    if relu { v = v.replacing(with: 0, where: v .< 0) }
    if columns == 16 {
        UnsafeMutableRawPointer(out).storeBytes(of: v, as: SIMD16<Float>.self)
    } else {
        for j in 0..<columns { out[j] = v[j] }
    }
}

/// GEMM's tile: the convolution micro-kernel over one packed strip of A — one tap of `channels` (the depth) values
/// per row, read every 6th float (`a[k · 6 + r]`, the six rows' values of one depth index side by side). `t.a` holds
/// the six row pointers `strip + r`; at a 3-row level the tile runs as two halves.
@inlinable
func gemmTile<L: KernelLevel>(_ level: L.Type, _ t: ConvolutionTile) {
    if L.tileRows == 6 && t.rows > 3 {
        convolutionRows(L.self, Rows6.self, Strip6.self, stride: 6, t)
        return
    }
    var half = t
    half.rows = min(3, t.rows)
    convolutionRows(L.self, Rows3.self, Strip6.self, stride: 3, half)
    guard t.rows > 3 else { return }
    (half.a, half.pixels, half.rows, half.residual) = (t.a + 3, t.pixels + 3, t.rows - 3, t.residual.map { $0 + 3 })
    convolutionRows(L.self, Rows3.self, Strip6.self, stride: 3, half)
}
