/// Winograd's input transform for one tile, a chunk of channels at a time in registers:
/// V[ξh, ξw] = Σ Bᵀ[ξh, jh] Bᵀ[ξw, jw] d[jh, jw]. `pixels` holds the tile's αH·αW input pixels (nil: padding);
/// V[ξ] for channel c goes to `destination[ξ · pointStride + c]`.
public struct WinogradInputTile {
    public var pixels: UnsafePointer<UnsafePointer<Float>?>
    public var channels: Int
    public var alphaH: Int, alphaW: Int
    /// Bᵀ of each axis, αH × αH and αW × αW, row-major.
    public var bth: UnsafePointer<Float>, btw: UnsafePointer<Float>
    public var destination: UnsafeMutablePointer<Float>
    public var pointStride: Int
    /// `scratchBytes(alphaH:alphaW:)` bytes, 64-byte aligned, for the kernel's registers that do not fit.
    public var scratch: UnsafeMutableRawPointer

    @inlinable
    public init(pixels: UnsafePointer<UnsafePointer<Float>?>, channels: Int, alphaH: Int, alphaW: Int,
                bth: UnsafePointer<Float>, btw: UnsafePointer<Float>, destination: UnsafeMutablePointer<Float>,
                pointStride: Int, scratch: UnsafeMutableRawPointer) {
        (self.pixels, self.channels, self.alphaH, self.alphaW) = (pixels, channels, alphaH, alphaW)
        (self.bth, self.btw, self.destination, self.pointStride) = (bth, btw, destination, pointStride)
        self.scratch = scratch
    }

    /// Scratch for one tile at any level: 2·αH·αW vectors of up to 64 bytes.
    @inlinable
    public static func scratchBytes(alphaH: Int, alphaW: Int) -> Int { 2 * alphaH * alphaW * 64 }
}

@inlinable
func winogradInputTile<L: KernelLevel>(_ level: L.Type, _ t: WinogradInputTile) {
    typealias V = L.Chunk
    let (aH, aW) = (t.alphaH, t.alphaW)
    do {
        let d = t.scratch.bindMemory(to: V.self, capacity: 2 * aH * aW), transformedH = d + aH * aW
        var c0 = 0
        while c0 < t.channels {
            let lanes = min(V.scalarCount, t.channels &- c0)
            for j in 0..<(aH &* aW) { d[j] = load(V.self, t.pixels[j].map { $0 + c0 }, lanes) }
            // Along H (skipped for a 1-tap axis), then along W.
            let source: UnsafeMutablePointer<V>
            if aH == 1 { source = d } else {
                transform(L.self, t.bth, rows: aH, inner: aH, stride: aW, d, into: transformedH)
                source = transformedH
            }
            var destination = t.destination + c0
            var sourceRow = source
            for _ in 0..<aH {
                var coefficients = t.btw
                for _ in 0..<aW {
                    var v = V()
                    for jw in 0..<aW { v = multiplyAdd(L.self, v, V(repeating: coefficients[jw]), sourceRow[jw]) }
                    store(v, destination, lanes)
                    destination += t.pointStride
                    coefficients += aW
                }
                sourceRow += aW
            }
            c0 += V.scalarCount
        }
    }
}

/// Winograd's output transform for one tile: y[ih, iw] = Σ Aᵀ[ih, ξh] Aᵀ[iw, ξw] M[ξh, ξw], then bias, residual
/// and ReLU, a chunk of channels at a time. M[ξ] for channel c is `source[ξ · pointStride + c]`; `outputs` holds
/// the tile's mH·mW output pixels (nil: past the map's edge), `residuals` the matching residual pixels.
public struct WinogradOutputTile {
    public var source: UnsafePointer<Float>
    public var pointStride: Int
    public var channels: Int
    public var alphaH: Int, alphaW: Int, mH: Int, mW: Int
    /// Aᵀ of each axis, mH × αH and mW × αW, row-major.
    public var ath: UnsafePointer<Float>, atw: UnsafePointer<Float>
    public var bias: UnsafePointer<Float>
    public var outputs: UnsafePointer<UnsafeMutablePointer<Float>?>
    public var residuals: UnsafePointer<UnsafeMutablePointer<Float>?>?
    public var relu: Bool
    /// `scratchBytes(alphaH:alphaW:mW:)` bytes, 64-byte aligned.
    public var scratch: UnsafeMutableRawPointer

    @inlinable
    public init(source: UnsafePointer<Float>, pointStride: Int, channels: Int, alphaH: Int, alphaW: Int, mH: Int,
                mW: Int, ath: UnsafePointer<Float>, atw: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                outputs: UnsafePointer<UnsafeMutablePointer<Float>?>,
                residuals: UnsafePointer<UnsafeMutablePointer<Float>?>?, relu: Bool, scratch: UnsafeMutableRawPointer) {
        (self.source, self.pointStride, self.channels) = (source, pointStride, channels)
        (self.alphaH, self.alphaW, self.mH, self.mW, self.ath, self.atw) = (alphaH, alphaW, mH, mW, ath, atw)
        (self.bias, self.outputs, self.residuals, self.relu, self.scratch) = (bias, outputs, residuals, relu, scratch)
    }

    /// Scratch for one tile at any level: αH·αW + αH·mW vectors of up to 64 bytes.
    @inlinable
    public static func scratchBytes(alphaH: Int, alphaW: Int, mW: Int) -> Int { (alphaH * alphaW + alphaH * mW) * 64 }
}

@inlinable
func winogradOutputTile<L: KernelLevel>(_ level: L.Type, _ t: WinogradOutputTile) {
    typealias V = L.Chunk
    let (aH, aW, mH, mW) = (t.alphaH, t.alphaW, t.mH, t.mW)
    do {
        // M as [ξh][ξw], then the partial transform as [ξh][iw].
        let m = t.scratch.bindMemory(to: V.self, capacity: aH * aW + aH * mW), partial = m + aH * aW
        var c0 = 0
        while c0 < t.channels {
            let lanes = min(V.scalarCount, t.channels &- c0)
            var source = t.source + c0
            for x in 0..<(aH &* aW) {
                m[x] = load(V.self, source, lanes)
                source += t.pointStride
            }
            var out = partial, row = m
            for _ in 0..<aH {
                var coefficients = t.atw
                for _ in 0..<mW {
                    var v = V()
                    for xw in 0..<aW { v = multiplyAdd(L.self, v, V(repeating: coefficients[xw]), row[xw]) }
                    out.pointee = v
                    out += 1
                    coefficients += aW
                }
                row += aW
            }
            let bias = load(V.self, t.bias + c0, lanes)
            var coefficients = t.ath
            for ih in 0..<mH {
                for iw in 0..<mW {
                    guard let output = t.outputs[ih &* mW &+ iw] else { continue }
                    var v = bias
                    var p = partial + iw
                    for xh in 0..<aH {
                        v = multiplyAdd(L.self, v, V(repeating: coefficients[xh]), p.pointee)
                        p += mW
                    }
                    if let residual = t.residuals?[ih &* mW &+ iw] { v += load(V.self, residual + c0, lanes) }
                    if t.relu { v = L.relu(v) }
                    store(v, output + c0, lanes)
                }
                coefficients += aH
            }
            c0 += V.scalarCount
        }
    }
}

/// A chunk of floats, or its first `lanes` and zeros (a channel tail); zeros for a nil pointer (padding).
@inlinable @inline(__always)
func load<V: SIMD>(_ type: V.Type, _ p: UnsafePointer<Float>?, _ lanes: Int) -> V where V.Scalar == Float {
    guard let p else { return V() }
    if lanes == V.scalarCount { return UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    var v = V()
    for i in 0..<lanes { v[i] = p[i] }
    return v
}

@inlinable @inline(__always)
func load<V: SIMD>(_ type: V.Type, _ p: UnsafeMutablePointer<Float>, _ lanes: Int) -> V where V.Scalar == Float {
    load(V.self, UnsafePointer(p), lanes)
}

@inlinable @inline(__always)
func store<V: SIMD>(_ v: V, _ p: UnsafeMutablePointer<Float>, _ lanes: Int) where V.Scalar == Float {
    if lanes == V.scalarCount { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self); return }
    for i in 0..<lanes { p[i] = v[i] }
}

/// out[x][j] = Σ_k matrix[x][k] · in[k][j] for x < rows, k < inner, j < stride (chunks). Dense: a multiply by zero
/// is cheaper than a branch here.
@inlinable @inline(__always)
func transform<L: KernelLevel>(_ level: L.Type, _ matrix: UnsafePointer<Float>, rows: Int, inner: Int, stride: Int,
                               _ input: UnsafeMutablePointer<L.Chunk>, into out: UnsafeMutablePointer<L.Chunk>) {
    var coefficients = matrix
    var destination = out
    for _ in 0..<rows {
        for j in 0..<stride {
            var v = L.Chunk()
            var source = input + j
            for k in 0..<inner {
                v = multiplyAdd(L.self, v, L.Chunk(repeating: coefficients[k]), source.pointee)
                source += stride
            }
            destination.pointee = v
            destination += 1
        }
        coefficients += inner
    }
}
