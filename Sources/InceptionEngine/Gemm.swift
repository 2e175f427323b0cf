import InceptionKernels

/// General matrix multiply, C = A·B (+ C), for the training kernels: weight gradients (dY^T · im2col(X)), data
/// gradients of strided convolutions (dY · W, then col2im) and linear layers. Inference never needs it — its
/// convolutions are implicit GEMMs over packed weights (`PackedConvolution`).
///
/// The blocking of Goto and van de Geijn ("Anatomy of high-performance matrix multiplication", 2008): for each
/// block of `depthBlock` depth, B is packed once into panels of 16 columns (the convolution weights' panel layout),
/// then tasks of `rowsPerTask` rows × some panels each pack their rows of A into 6-row strips and run the
/// convolution's micro-kernel over each strip and the task's panels (one tap of `depth` values read every 6th float;
/// C's rows as its output pixels, C itself as the residual when accumulating). Any strides, so transposes cost
/// nothing extra.
///
/// Each element of C is summed over the depth in one fixed order whatever the thread count, so results are
/// bitwise the same for every `threads`.

/// A strided view of a matrix: element (i, j) at `base[i · rowStride + j · columnStride]`.
package struct MatrixView: @unchecked Sendable {
    package var base: UnsafePointer<Float>
    package var rows: Int, columns: Int
    package var rowStride: Int, columnStride: Int

    package init(_ base: UnsafePointer<Float>, rows: Int, columns: Int, rowStride: Int, columnStride: Int = 1) {
        self.base = base
        (self.rows, self.columns, self.rowStride, self.columnStride) = (rows, columns, rowStride, columnStride)
    }

    /// A row-major `rows × columns` matrix.
    package init(rowMajor base: UnsafePointer<Float>, rows: Int, columns: Int) {
        self.init(base, rows: rows, columns: columns, rowStride: columns)
    }

    /// The transpose, by swapping strides.
    package var transposed: MatrixView {
        MatrixView(base, rows: columns, columns: rows, rowStride: columnStride, columnStride: rowStride)
    }

    @inline(__always) subscript(i: Int, j: Int) -> Float { base[i * rowStride + j * columnStride] }
}

package enum GEMM {
    static let depthBlock = 256
    static let rowsPerTask = 72

    /// `c[i · ldc + j] = (accumulate ? c[i · ldc + j] : 0) + Σₖ a[i, k] · b[k, j]`.
    /// `tile`: the register tile (nil: the one measured fastest for GEMM on this CPU, `TileTuning.gemmTile`).
    package static func multiply(_ a: MatrixView, _ b: MatrixView, into c: UnsafeMutablePointer<Float>, ldc: Int,
                                accumulate: Bool, threads: Int, kernels: KernelTable = Kernels.current,
                                tile: TileShape? = nil) {
        precondition(a.columns == b.rows, "GEMM: \(a.rows)×\(a.columns) · \(b.rows)×\(b.columns)")
        multiply(a, columns: b.columns, into: c, ldc: ldc, accumulate: accumulate, threads: threads, kernels: kernels,
                 tile: tile, beginBlock: { _, _ in }) { dst, k0, depth, p in
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
                         accumulate: Bool, threads: Int, kernels: KernelTable = Kernels.current,
                         tile: TileShape? = nil, beginBlock: (_ k0: Int, _ depth: Int) -> Void,
                         packPanel: (UnsafeMutablePointer<Float>, _ k0: Int, _ depth: Int, _ panel: Int) -> Void) {
        let (m, k) = (a.rows, a.columns)
        if m == 0 || n == 0 { return }
        if k == 0 {
            if !accumulate { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
            return
        }
        let shape = tile ?? TileTuning.gemmTile(kernels)
        // Rows a tile takes: one 6-row strip, or two for a 12-row tile (a 3-row tile runs a strip as two halves).
        let tileStrips = shape.rows / 6 + (shape.rows < 6 ? 1 : 0)
        let panels = (n + 15) / 16
        let kc = min(depthBlock, k)
        let packedB = AlignedBuffer(count: panels * kc * 16)
        let rowTasks = (m + rowsPerTask - 1) / rowsPerTask
        // Split the panels too when there are too few row blocks to keep every thread busy.
        var panelTasks = 1
        while rowTasks * panelTasks < 4 * threads && panelTasks < panels { panelTasks *= 2 }
        panelTasks = min(panelTasks, panels)
        var panelsPerTask = (panels + panelTasks - 1) / panelTasks
        panelsPerTask += panelsPerTask % shape.panels
        panelTasks = (panels + panelsPerTask - 1) / panelsPerTask
        let kernel = kernels.gemm  // the convolution micro-kernel over packed strips, at the kernels' level
        // What every tile's epilogue reads: panel p's output at c + 16p (row i at + i · ldc), no bias.
        let epilogue = UnsafeMutableRawPointer.allocate(byteCount: panels * (8 + 8 + 64), alignment: 64)
        defer { epilogue.deallocate() }
        let zeros = epilogue.initializeMemory(as: Float.self, repeating: 0, count: panels * 16)
        let bases = (epilogue + panels * 64).bindMemory(to: UnsafeMutablePointer<Float>.self, capacity: panels)
        let strides = (epilogue + panels * 72).initializeMemory(as: Int.self, repeating: ldc, count: panels)
        for p in 0..<panels { (bases + p).initialize(to: c + p * 16) }
        let tables = UncheckedSendable((zeros, bases, strides))
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
                let firstPanel = panelTask * panelsPerTask, taskPanels = min(panels - firstPanel, panelsPerTask)
                let strips = (rowCount + 5) / 6
                withUnsafeTemporaryAllocation(of: Float.self, capacity: strips * 6 * depth) { packedA in
                    let packedA = packedA.baseAddress!
                    for s in 0..<strips {
                        packStrip(a, firstRow: firstRow + s * 6, rows: min(6, rowCount - s * 6), k0: k0, depth: depth,
                                  into: packedA + s * 6 * depth)
                    }
                    let (zeros, bases, strides) = tables.value
                    // Per tile: its row pointers (6 a strip), pixels (C's rows) and, when accumulating, C's rows.
                    withUnsafeTemporaryAllocation(byteCount: 12 * 24, alignment: 8) { table in
                        let rowPointers = table.baseAddress!.bindMemory(to: UnsafePointer<Float>.self, capacity: 12)
                        let pixels = (table.baseAddress! + 96).bindMemory(to: Int.self, capacity: 12)
                        let residual = (table.baseAddress! + 192).bindMemory(to: UnsafeMutablePointer<Float>.self,
                                                                             capacity: 12)
                        for s in stride(from: 0, to: strips, by: tileStrips) {
                            for r in 0..<(6 * min(tileStrips, strips - s)) {
                                rowPointers[r] = UnsafePointer(packedA + (s + r / 6) * 6 * depth + r % 6)
                                pixels[r] = firstRow + s * 6 + r
                                residual[r] = out.value + pixels[r] * ldc
                            }
                            kernel(MicroKernelCall(
                                a: rowPointers, taps: 1, channels: depth, weights: bBase.value + firstPanel * kc * 16,
                                panelFloats: kc * 16, firstPanel: firstPanel, panels: taskPanels, outChannels: n,
                                bias: zeros, outputBases: bases, outputStrides: strides, pixels: pixels,
                                residual: add ? UnsafePointer(residual) : nil,
                                rows: min(6 * tileStrips, rowCount - s * 6), relu: false, shape: shape))
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
    package static func reference(_ a: MatrixView, _ b: MatrixView) -> [Float] {
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
