/// General matrix multiply, C = A·B (+ C), for the training kernels: weight gradients (dY^T · im2col(X)), data
/// gradients of strided convolutions (dY · W, then col2im) and linear layers. Inference never needs it — its
/// convolutions are implicit GEMMs over packed weights (`PackedConvolution`).
///
/// The blocking of Goto and van de Geijn ("Anatomy of high-performance matrix multiplication", 2008): for each
/// block of `depthBlock` depth, B is packed once into panels of 16 columns (the same panel layout and the same
/// 6×16 register tile as the convolution kernel), then tasks of `rowsPerTask` rows × some panels each pack their
/// rows of A into 6-row strips and run the micro-kernel over them. Any strides, so transposes cost nothing extra.
///
/// Each element of C is summed over the depth in one fixed order whatever the thread count, so results are
/// bitwise the same for every `threads`.

/// A strided view of a matrix: element (i, j) at `base[i · rowStride + j · columnStride]`.
public struct MatrixView: @unchecked Sendable {
    public var base: UnsafePointer<Float>
    public var rows: Int, columns: Int
    public var rowStride: Int, columnStride: Int

    public init(_ base: UnsafePointer<Float>, rows: Int, columns: Int, rowStride: Int, columnStride: Int = 1) {
        self.base = base
        (self.rows, self.columns, self.rowStride, self.columnStride) = (rows, columns, rowStride, columnStride)
    }

    /// A row-major `rows × columns` matrix.
    public init(rowMajor base: UnsafePointer<Float>, rows: Int, columns: Int) {
        self.init(base, rows: rows, columns: columns, rowStride: columns)
    }

    /// The transpose, by swapping strides.
    public var transposed: MatrixView {
        MatrixView(base, rows: columns, columns: rows, rowStride: columnStride, columnStride: rowStride)
    }

    @inline(__always) subscript(i: Int, j: Int) -> Float { base[i * rowStride + j * columnStride] }
}

public enum GEMM {
    static let depthBlock = 256
    static let rowsPerTask = 72

    /// `c[i · ldc + j] = (accumulate ? c[i · ldc + j] : 0) + Σₖ a[i, k] · b[k, j]`.
    public static func multiply(_ a: MatrixView, _ b: MatrixView, into c: UnsafeMutablePointer<Float>, ldc: Int,
                                accumulate: Bool, threads: Int) {
        precondition(a.columns == b.rows, "GEMM: \(a.rows)×\(a.columns) · \(b.rows)×\(b.columns)")
        multiply(a, columns: b.columns, into: c, ldc: ldc, accumulate: accumulate, threads: threads,
                 beginBlock: { _, _ in }) { dst, k0, depth, p in
            let columns = min(16, b.columns - p * 16)
            for kk in 0..<depth {
                let row = dst + kk * 16
                let src = b.base + (k0 + kk) * b.rowStride + p * 16 * b.columnStride
                if b.columnStride == 1 {
                    row.update(from: src, count: columns)
                } else {
                    for j in 0..<columns { row[j] = src[j * b.columnStride] }
                }
                if columns < 16 { (row + columns).update(repeating: 0, count: 16 - columns) }
            }
        }
    }

    /// The same product with B given by what packs it: for each block of `depthBlock` rows of B, `beginBlock(k0,
    /// depth)` runs once, then `packPanel(dst, k0, depth, p)` fills `dst[kk · 16 + j]` with b[k0 + kk, 16p + j]
    /// (zeros past the last column) — concurrently for different panels. This is how the weight gradient reads
    /// im2col(X) without ever building it.
    static func multiply(_ a: MatrixView, columns n: Int, into c: UnsafeMutablePointer<Float>, ldc: Int,
                         accumulate: Bool, threads: Int, beginBlock: (_ k0: Int, _ depth: Int) -> Void,
                         packPanel: (UnsafeMutablePointer<Float>, _ k0: Int, _ depth: Int, _ panel: Int) -> Void) {
        let (m, k) = (a.rows, a.columns)
        if m == 0 || n == 0 { return }
        if k == 0 {
            if !accumulate { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
            return
        }
        let panels = (n + 15) / 16
        let kc = min(depthBlock, k)
        let packedB = AlignedBuffer(count: panels * kc * 16)
        let rowTasks = (m + rowsPerTask - 1) / rowsPerTask
        // Split the panels too when there are too few row blocks to keep every thread busy.
        var panelTasks = 1
        while rowTasks * panelTasks < 4 * threads && panelTasks < panels { panelTasks *= 2 }
        panelTasks = min(panelTasks, panels)
        let panelsPerTask = (panels + panelTasks - 1) / panelTasks
        panelTasks = (panels + panelsPerTask - 1) / panelsPerTask
        let out = UncheckedSendable(c)

        for k0 in stride(from: 0, to: k, by: kc) {
            let depth = min(kc, k - k0)
            let bBase = UncheckedSendable(packedB.pointer)
            beginBlock(k0, depth)
            Parallel.parallelFor(panels, threads: threads) { p in packPanel(bBase.value + p * kc * 16, k0, depth, p) }
            let add = accumulate || k0 > 0
            Parallel.parallelFor(rowTasks * panelTasks, threads: threads) { task in
                let (rowTask, panelTask) = (task / panelTasks, task % panelTasks)
                let firstRow = rowTask * rowsPerTask, rowCount = min(rowsPerTask, m - firstRow)
                let strips = (rowCount + 5) / 6
                withUnsafeTemporaryAllocation(of: Float.self, capacity: strips * 6 * depth) { packedA in
                    let packedA = packedA.baseAddress!
                    for s in 0..<strips {
                        packStrip(a, firstRow: firstRow + s * 6, rows: min(6, rowCount - s * 6), k0: k0, depth: depth,
                                  into: packedA + s * 6 * depth)
                    }
                    for p in (panelTask * panelsPerTask)..<min(panels, (panelTask + 1) * panelsPerTask) {
                        let columns = min(16, n - p * 16)
                        for s in 0..<strips {
                            let rows = min(6, rowCount - s * 6)
                            gemmMicroKernel(depth: depth, a: packedA + s * 6 * depth, b: bBase.value + p * kc * 16,
                                            c: out.value + (firstRow + s * 6) * ldc + p * 16, ldc: ldc,
                                            rows: rows, columns: columns, accumulate: add)
                        }
                    }
                }
            }
        }
    }

    /// Packs rows `firstRow ..< firstRow + rows` (at most 6) of A, depth `k0 ..< k0 + depth`, as `dst[kk · 6 + r]`,
    /// zeros for the missing rows. A transposed A (`rowStride == 1`, a weight gradient's dYᵀ) has its six values of
    /// one depth index side by side, so it is copied depth index by depth index.
    @inline(__always)
    private static func packStrip(_ a: MatrixView, firstRow: Int, rows: Int, k0: Int, depth: Int,
                                  into dst: UnsafeMutablePointer<Float>) {
        if a.rowStride == 1 && rows == 6 {
            var src = a.base + (firstRow &+ k0 &* a.columnStride), d = dst
            for _ in 0..<depth {
                UnsafeMutableRawPointer(d).storeBytes(of: UnsafeRawPointer(src).loadUnaligned(as: SIMD4<Float>.self),
                                                      as: SIMD4<Float>.self)
                (d[4], d[5]) = (src[4], src[5])
                src += a.columnStride
                d += 6
            }
            return
        }
        for r in 0..<6 {
            if r >= rows {
                for kk in 0..<depth { dst[kk &* 6 &+ r] = 0 }
                continue
            }
            let src = a.base + ((firstRow &+ r) &* a.rowStride &+ k0 &* a.columnStride)
            for kk in 0..<depth { dst[kk &* 6 &+ r] = src[kk &* a.columnStride] }
        }
    }

    /// The same product by three plain loops in Double, for tests.
    public static func reference(_ a: MatrixView, _ b: MatrixView) -> [Float] {
        var c = [Float](repeating: 0, count: a.rows * b.columns)
        for i in 0..<a.rows {
            for j in 0..<b.columns {
                var s = 0.0
                for kk in 0..<a.columns { s += Double(a[i, kk]) * Double(b[kk, j]) }
                c[i * b.columns + j] = Float(s)
            }
        }
        return c
    }
}

/// 6×16 tile of C from a 6-row strip of packed A (`a[k · 6 + r]`) and a 16-column panel of packed B (`b[k · 16 + j]`).
@inline(__always)
private func gemmMicroKernel(depth: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                             c: UnsafeMutablePointer<Float>, ldc: Int, rows: Int, columns: Int, accumulate: Bool) {
    typealias V = SIMD8<Float>
    var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V()
    var c30 = V(), c31 = V(), c40 = V(), c41 = V(), c50 = V(), c51 = V()
    var pa = a, pb = UnsafeRawPointer(b)
    for _ in 0..<depth {
        let w0 = pb.load(as: V.self)
        let w1 = pb.load(fromByteOffset: 32, as: V.self)
        pb += 64
        var x = V(repeating: pa[0])
        c00 = c00.addingProduct(x, w0); c01 = c01.addingProduct(x, w1)
        x = V(repeating: pa[1])
        c10 = c10.addingProduct(x, w0); c11 = c11.addingProduct(x, w1)
        x = V(repeating: pa[2])
        c20 = c20.addingProduct(x, w0); c21 = c21.addingProduct(x, w1)
        x = V(repeating: pa[3])
        c30 = c30.addingProduct(x, w0); c31 = c31.addingProduct(x, w1)
        x = V(repeating: pa[4])
        c40 = c40.addingProduct(x, w0); c41 = c41.addingProduct(x, w1)
        x = V(repeating: pa[5])
        c50 = c50.addingProduct(x, w0); c51 = c51.addingProduct(x, w1)
        pa += 6
    }
    @inline(__always) func store(_ lo: V, _ hi: V, _ row: Int) {
        let out = c + row * ldc
        if columns == 16 {
            var (lo, hi) = (lo, hi)
            if accumulate {
                lo += UnsafeRawPointer(out).loadUnaligned(as: V.self)
                hi += UnsafeRawPointer(out).loadUnaligned(fromByteOffset: 32, as: V.self)
            }
            UnsafeMutableRawPointer(out).storeBytes(of: lo, as: V.self)
            UnsafeMutableRawPointer(out).storeBytes(of: hi, toByteOffset: 32, as: V.self)
        } else {
            for j in 0..<columns {
                let v = j < 8 ? lo[j] : hi[j - 8]
                out[j] = accumulate ? out[j] + v : v
            }
        }
    }
    store(c00, c01, 0)
    if rows > 1 { store(c10, c11, 1) }
    if rows > 2 { store(c20, c21, 2) }
    if rows > 3 { store(c30, c31, 3) }
    if rows > 4 { store(c40, c41, 4) }
    if rows > 5 { store(c50, c51, 5) }
}
