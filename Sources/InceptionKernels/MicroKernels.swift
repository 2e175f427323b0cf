/// One call of a convolution's micro-kernel, as an implicit GEMM: `rows` output pixels (at most `shape.rows`) × the
/// panels `firstPanel ..< firstPanel + panels` of 16 output channels, run `shape.panels` at a time, over `taps`
/// indirection entries of `channels` input values each, contiguous.
/// `a[t · shape.rows + r]` points at row r's input for tap t (or at zeros, for padding);
/// panel p's weights are `taps · channels × 16` floats at `weights + (p − firstPanel) · panelFloats`. Row r is output
/// pixel `pixels[r]`; panel p of it is stored at `outputBases[p] + pixels[r] · outputStrides[p]` (sibling
/// convolutions merged into one GEMM write to different maps). The epilogue adds the bias (`bias[16p ...]`) and the
/// residual (`residual[r] + 16p`), applies ReLU and stores the panel's channels that exist (≤ 16).
public struct MicroKernelCall {
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
    public var shape: TileShape

    @inlinable
    public init(a: UnsafePointer<UnsafePointer<Float>>, taps: Int, channels: Int, weights: UnsafePointer<Float>,
                panelFloats: Int, firstPanel: Int, panels: Int, outChannels: Int, bias: UnsafePointer<Float>,
                outputBases: UnsafePointer<UnsafeMutablePointer<Float>>, outputStrides: UnsafePointer<Int>,
                pixels: UnsafePointer<Int>, residual: UnsafePointer<UnsafeMutablePointer<Float>>?, rows: Int,
                relu: Bool, shape: TileShape) {
        (self.a, self.taps, self.channels, self.weights, self.panelFloats) = (a, taps, channels, weights, panelFloats)
        (self.firstPanel, self.panels, self.outChannels, self.bias) = (firstPanel, panels, outChannels, bias)
        (self.outputBases, self.outputStrides, self.pixels) = (outputBases, outputStrides, pixels)
        (self.residual, self.rows, self.relu, self.shape) = (residual, rows, relu, shape)
    }
}

/// A register tile: `rows` output pixels × `panels` panels of 16 output channels, accumulated at once over the whole
/// depth (`rows · panels` accumulators of 16 lanes). Which one is fastest depends on the CPU — on its registers, its
/// FMA units and their latency — so it is measured on the CPU that runs the model (InceptionEngine's tile tuning).
/// Every shape adds each output's products in the same order, so results are bitwise the same whichever runs.
public struct TileShape: Hashable, Sendable, CodableAsText {
    public let rows: Int, panels: Int

    public init(rows: Int, panels: Int) {
        precondition([3, 6, 12].contains(rows) && [1, 2].contains(panels), "tiles of 3, 6 or 12 rows × 1 or 2 panels")
        (self.rows, self.panels) = (rows, panels)
    }

    /// "6×32": rows × output channels.
    public var description: String { "\(rows)×\(16 * panels)" }

    public init?(_ text: String) {
        let parts = text.split(separator: "×")
        guard parts.count == 2, let rows = Int(parts[0]), let columns = Int(parts[1]), [3, 6, 12].contains(rows),
              [16, 32].contains(columns) else { return nil }
        self.init(rows: rows, panels: columns / 16)
    }

    public static var textKind: String { "a tile such as 6×32" }

    /// Every shape the kernels are compiled for, at every level (a level's candidates are those that fit its
    /// registers; the rest still run, correctly, for tests).
    public static let all = [(3, 1), (6, 1), (3, 2), (6, 2), (12, 1), (12, 2)].map { TileShape(rows: $0, panels: $1) }
}

/// A value kept in a file as its description (a table's "6×32", "winograd F(4,3)"), read back by `init?(_:)`.
public protocol CodableAsText: Codable, CustomStringConvertible {
    init?(_ text: String)
    /// What a valid text is, for the error on one that is not.
    static var textKind: String { get }
}

extension CodableAsText {
    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = Self(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "'\(text)' is not \(Self.textKind)"))
        }
        self = value
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// Runs a convolution tile at its shape, with fewer rows when few are valid (the last tile of a small map), so that
/// rows which would be thrown away are not computed.
@inlinable
func microKernel<L: KernelLevel>(_ level: L.Type, _ t: MicroKernelCall) {
    runTile(L.self, Contiguous.self, stride: t.shape.rows, t)
}

/// GEMM's tile: the convolution micro-kernel over packed strips of A — one tap of `channels` (the depth) values
/// per row, read every 6th float (`a[k · 6 + r]`, six rows' values of one depth index side by side). `t.a` holds
/// the row pointers `strip + r` (6, or 12 over two strips); a 3-row tile runs a strip as two halves.
@inlinable
func gemmTile<L: KernelLevel>(_ level: L.Type, _ t: MicroKernelCall) {
    guard t.shape.rows == 3 && t.rows > 3 else { return runTile(L.self, Strip6.self, stride: 6, t) }
    var half = t
    half.rows = 3
    runTile(L.self, Strip6.self, stride: 6, half)
    (half.a, half.pixels, half.rows, half.residual) = (t.a + 3, t.pixels + 3, t.rows - 3, t.residual.map { $0 + 3 })
    runTile(L.self, Strip6.self, stride: 6, half)
}

/// The tile's panels in pairs at a two-panel shape (an odd last panel alone), at the fewest rows that hold the
/// valid ones.
@inlinable @inline(__always)
func runTile<L: KernelLevel, S: RowStep>(_ level: L.Type, _ step: S.Type, stride: Int, _ t: MicroKernelCall) {
    let rows = min(t.shape.rows, t.rows <= 3 ? 3 : t.rows <= 6 ? 6 : 12)
    let paired = t.shape.panels == 2 ? t.panels & ~1 : 0
    if paired > 0 {
        var pairs = t
        pairs.panels = paired
        runRows(L.self, S.self, TwoPanels.self, rows: rows, stride: stride, pairs)
    }
    guard paired < t.panels else { return }
    var rest = t
    (rest.firstPanel, rest.panels) = (t.firstPanel &+ paired, t.panels &- paired)
    rest.weights = t.weights + paired &* t.panelFloats
    runRows(L.self, S.self, OnePanel.self, rows: rows, stride: stride, rest)
}

@inlinable @inline(__always)
func runRows<L: KernelLevel, S: RowStep, P: TilePanels>(_ level: L.Type, _ step: S.Type, _ panels: P.Type, rows: Int,
                                                         stride: Int, _ t: MicroKernelCall) {
    switch rows {
    case 3: convolutionRows(L.self, Rows3.self, P.self, S.self, stride: stride, t)
    case 6: convolutionRows(L.self, Rows6.self, P.self, S.self, stride: stride, t)
    default: convolutionRows(L.self, Rows12.self, P.self, S.self, stride: stride, t)
    }
}

/// A tile's row and panel counts as types, so that each specialisation of `convolutionRows` has them as constants
/// and keeps only the accumulators it uses in registers (a count passed as a value kept them all, spilling at AVX2).
public protocol TileRows { static var count: Int { get } }
public enum Rows3: TileRows { @inlinable public static var count: Int { 3 } }
public enum Rows6: TileRows { @inlinable public static var count: Int { 6 } }
public enum Rows12: TileRows { @inlinable public static var count: Int { 12 } }
public protocol TilePanels { static var count: Int { get } }
public enum OnePanel: TilePanels { @inlinable public static var count: Int { 1 } }
public enum TwoPanels: TilePanels { @inlinable public static var count: Int { 2 } }

/// How far apart a row's successive input values lie, as a type for the same reason: a step passed as a value
/// needed a register per row for the unrolled loop's second value and spilled. 1 in a convolution's rows; 6 in
/// GEMM's packed strips, where the six rows' values of one depth index sit side by side.
public protocol RowStep { static var floats: Int { get } }
public enum Contiguous: RowStep { @inlinable public static var floats: Int { 1 } }
public enum Strip6: RowStep { @inlinable public static var floats: Int { 6 } }

/// Six rows' accumulators of one panel, and six rows' input pointers.
public typealias SixRows = (SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>)
public typealias SixPointers = (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>,
                                UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>)

/// The one micro-kernel of the engine — convolution, Winograd's batched multiplies and GEMM all run it:
/// `R.count` (3, 6 or 12) rows × `P.count` (1 or 2) panels of 16 columns; the indirection table has `stride` entries
/// per tap. `c.0` holds rows 0–5 of the first panel, `c.1` rows 6–11; `d` the same for the second panel. Every
/// output is the sum over taps, then channels, in order, from zero — the same in every shape.
@inlinable
func convolutionRows<L: KernelLevel, R: TileRows, P: TilePanels, S: RowStep>(
    _ level: L.Type, _ tileRows: R.Type, _ tilePanels: P.Type, _ step: S.Type, stride: Int, _ t: MicroKernelCall
) {
    typealias V = SIMD16<Float>
    let (low, high) = (min(R.count, 6), R.count > 6)
    let zero: SixRows = (V(), V(), V(), V(), V(), V())
    let secondPanel = t.panelFloats &* 4
    for q in Swift.stride(from: 0, to: t.panels, by: P.count) {
        var c = (zero, zero), d = (zero, zero)
        var w = UnsafeRawPointer(t.weights + q &* t.panelFloats)
        for tap in 0..<t.taps {
            let row = t.a + tap &* stride
            let a = sixPointers(row, count: low), b = high ? sixPointers(row + 6, count: 6) : a
            var i = 0
            for _ in 0..<t.channels {
                let w0 = w.loadUnaligned(as: V.self)
                let w1 = P.count > 1 ? (w + secondPanel).loadUnaligned(as: V.self) : w0
                w += 64
                accumulate(L.self, &c.0, a, i, w0, rows: low)
                if P.count > 1 { accumulate(L.self, &d.0, a, i, w1, rows: low) }
                if high {
                    accumulate(L.self, &c.1, b, i, w0, rows: 6)
                    if P.count > 1 { accumulate(L.self, &d.1, b, i, w1, rows: 6) }
                }
                i &+= S.floats
            }
        }
        storePanel(c, t.firstPanel &+ q, t)
        if P.count > 1 { storePanel(d, t.firstPanel &+ q &+ 1, t) }
    }
}

/// Row pointers 0–2 (and 3–5 when `count` is 6) of the table at `row`; the rest repeat row 0 and are not read.
@inlinable @inline(__always)
func sixPointers(_ row: UnsafePointer<UnsafePointer<Float>>, count: Int) -> SixPointers {
    let (a0, a1, a2) = (row[0], row[1], row[2])
    return count > 3 ? (a0, a1, a2, row[3], row[4], row[5]) : (a0, a1, a2, a0, a0, a0)
}

/// c[r] += a[r][i] · w for the first `rows` (3 or 6) rows.
@inlinable @inline(__always)
func accumulate<L: KernelLevel>(_ level: L.Type, _ c: inout SixRows, _ a: SixPointers, _ i: Int, _ w: SIMD16<Float>,
                                rows: Int) {
    typealias V = SIMD16<Float>
    c.0 = multiplyAdd(L.self, c.0, V(repeating: a.0[i]), w)
    c.1 = multiplyAdd(L.self, c.1, V(repeating: a.1[i]), w)
    c.2 = multiplyAdd(L.self, c.2, V(repeating: a.2[i]), w)
    if rows > 3 {
        c.3 = multiplyAdd(L.self, c.3, V(repeating: a.3[i]), w)
        c.4 = multiplyAdd(L.self, c.4, V(repeating: a.4[i]), w)
        c.5 = multiplyAdd(L.self, c.5, V(repeating: a.5[i]), w)
    }
}

/// Panel `p`'s valid rows (of up to 12) + bias, through the epilogue to their output pixels.
@inlinable @inline(__always)
func storePanel(_ c: (SixRows, SixRows), _ p: Int, _ t: MicroKernelCall) {
    let bias = UnsafeRawPointer(t.bias + p &* 16).loadUnaligned(as: SIMD16<Float>.self)
    storeSix(c.0, first: 0, bias, p, t)
    if t.rows > 6 { storeSix(c.1, first: 6, bias, p, t) }
}

@inlinable @inline(__always)
func storeSix(_ c: SixRows, first: Int, _ bias: SIMD16<Float>, _ p: Int, _ t: MicroKernelCall) {
    let (base, pixelStride, columns) = (t.outputBases[p], t.outputStrides[p], min(16, t.outChannels &- p &* 16))
    storeRow(c.0 + bias, first, t, base, pixelStride, p, columns)
    if t.rows > first + 1 { storeRow(c.1 + bias, first + 1, t, base, pixelStride, p, columns) }
    if t.rows > first + 2 { storeRow(c.2 + bias, first + 2, t, base, pixelStride, p, columns) }
    if t.rows > first + 3 { storeRow(c.3 + bias, first + 3, t, base, pixelStride, p, columns) }
    if t.rows > first + 4 { storeRow(c.4 + bias, first + 4, t, base, pixelStride, p, columns) }
    if t.rows > first + 5 { storeRow(c.5 + bias, first + 5, t, base, pixelStride, p, columns) }
}

/// Row `r` of panel `p`'s tile to its output pixel.
@inlinable @inline(__always)
func storeRow(_ value: SIMD16<Float>, _ r: Int, _ t: MicroKernelCall, _ base: UnsafeMutablePointer<Float>,
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
