import InceptionEngine
import Testing

/// Every register tile gives the same bits: each adds an output's products in the same order. Checked for every
/// tile shape the kernels are compiled for (not only the level's candidates) at every level this CPU runs, against
/// each other and against the plain reference, for the implicit GEMM (partial tiles, channel slices, residuals,
/// merged siblings), Winograd's batched multiplies and GEMM.
struct TileIdentityTests {
    /// Runs `body` once per tile shape at every supported level; at each level every result must equal the first
    /// tile's bit for bit (levels differ from each other: baseline x86-64 rounds the product before adding it).
    /// Returns the result at the best level.
    func expectIdentical(_ label: String, _ body: (TileShape, KernelTable) -> [Float]) -> [Float] {
        var best: [Float] = []
        for kernels in Kernels.supported {
            let first = body(TileShape.all[0], kernels)
            if best.isEmpty { best = first }
            for tile in TileShape.all.dropFirst() {
                let got = body(tile, kernels)
                let differing = zip(got, first).filter { $0.bitPattern != $1.bitPattern }.count
                #expect(got.count == first.count && differing == 0,
                        "\(label): \(kernels.name) \(tile): \(differing) values differ from \(TileShape.all[0])'s")
            }
        }
        return best
    }

    @Test(arguments: ConvolutionKernelTests.cases)
    func implicitGEMMTilesAgree(_ c: ConvolutionKernelTests.Case) {
        var rng = SeededRandom(UInt64(c.h * 17 + c.cout))
        let g = ConvGeometry(inChannels: c.cin, outChannels: c.cout, kernel: (c.kh, c.kw), stride: (c.stride, c.stride),
                             padding: (c.ph, c.pw))
        var input = rng.tensor([c.n, c.h, c.w, c.cin])
        let weights = rng.array(g.outChannels * g.depth), bias = rng.array(c.cout)
        let (oh, ow) = g.outputSize(h: c.h, w: c.w)
        var residual = rng.tensor([c.n, oh, ow, c.cout])
        let zeros = [Float](repeating: 0, count: c.cin)
        let first = expectIdentical("\(c.testDescription)") { tile, kernels in
            var packed = PackedConvolution(geometry: g, weights: weights, bias: bias, scale: 0.3, activation: .relu)
            packed.tile = tile
            var output = Tensor(shape: [c.n, oh, ow, c.cout + 7], scalars: .init(repeating: 42,
                                                                               count: c.n * oh * ow * (c.cout + 7)))
            zeros.withUnsafeBufferPointer { z in
                withMap(&input) { i in withMap(&output) { o in withMap(&residual) { r in
                    packed.run(input: i, output: o.channels(3, c.cout), residual: r, zeros: z.baseAddress!,
                               threads: 2, kernels: kernels)
                } } }
            }
            return output.scalars
        }
        let expected = Reference.convolution(input, weights: weights, bias: bias, geometry: g, scale: 0.3,
                                             residual: residual, activation: .relu)
        let result = Tensor(shape: [c.n, oh, ow, c.cout + 7], scalars: first)
        let (slice, guards) = channelSlice(result, offset: 3, count: c.cout)
        #expect(relativeError(slice, expected.scalars) < 1e-6 && guards.allSatisfy { $0 == 42 })
    }

    /// Sibling convolutions merged into one GEMM write three maps (32, 48 and 17 channels): odd panel counts per map,
    /// so a two-panel tile pairs panels across maps.
    @Test(arguments: [1, 2, 3])
    func mergedSiblingTilesAgree(threads: Int) {
        var rng = SeededRandom(5)
        let widths = [32, 48, 17], total = 97
        let g = ConvGeometry(inChannels: 40, outChannels: total, kernel: (1, 1))
        var input = rng.tensor([2, 9, 7, 40])
        let weights = rng.array(total * 40), bias = rng.array(total)
        let zeros = [Float](repeating: 0, count: 40)
        _ = expectIdentical("siblings, \(threads) threads") { tile, kernels in
            var packed = PackedConvolution(geometry: g, weights: weights, bias: bias, activation: .relu)
            packed.tile = tile
            var (m0, m1, m2) = (Tensor(zeros: [2, 9, 7, widths[0]]), Tensor(zeros: [2, 9, 7, widths[1]]),
                                Tensor(zeros: [2, 9, 7, widths[2]]))
            zeros.withUnsafeBufferPointer { z in
                withMap(&input) { i in withMap(&m0) { a in withMap(&m1) { b in withMap(&m2) { c in
                    packed.run(input: i, outputs: [a, b, c], zeros: z.baseAddress!, threads: threads, kernels: kernels)
                } } } }
            }
            return m0.scalars + m1.scalars + m2.scalars
        }
    }

    @Test(arguments: WinogradTests.cases)
    func winogradTilesAgree(_ c: WinogradTests.Case) throws {
        var rng = SeededRandom(UInt64(c.h * 3 + c.cin))
        let g = ConvGeometry(inChannels: c.cin, outChannels: c.cout, kernel: (c.kh, c.kw), padding: (c.ph, c.pw))
        var input = rng.tensor([c.n, c.h, c.w, c.cin])
        let weights = rng.array(c.cout * g.depth).map { $0 / Float(g.depth).squareRoot() }, bias = rng.array(c.cout)
        let (oh, ow) = g.outputSize(h: c.h, w: c.w)
        let conv = try #require(WinogradConvolution(geometry: g, weights: weights, bias: bias, activation: .relu,
                                                    outputSize: (oh, ow)))
        var residual = rng.tensor([c.n, oh, ow, c.cout])
        _ = expectIdentical(c.testDescription) { tile, kernels in
            var output = Tensor(zeros: [c.n, oh, ow, c.cout])
            var scratch = [Float](repeating: .nan, count: conv.scratchFloats(n: c.n, h: c.h, w: c.w))
            scratch.withUnsafeMutableBufferPointer { s in
                withMap(&input) { i in withMap(&output) { o in withMap(&residual) { r in
                    conv.run(input: i, output: o, residual: r, scratch: s.baseAddress!, threads: 2, kernels: kernels,
                             tile: tile)
                } } }
            }
            return output.scalars
        }
    }

    /// Rows that fill no whole tile (7, 13), a depth past one block (300, 513), panel counts odd and even, both
    /// layouts of A, accumulating into C.
    @Test(arguments: [(7, 5, 3), (13, 37, 300), (72, 48, 256), (100, 33, 513), (150, 80, 40)])
    func gemmTilesAgree(_ shape: (Int, Int, Int)) {
        let (m, n, k) = shape
        var rng = SeededRandom(UInt64(m * 7 + n))
        let a = rng.array(m * k), b = rng.array(k * n), c0 = rng.array(m * n)
        a.withUnsafeBufferPointer { a in b.withUnsafeBufferPointer { b in
            let layouts = [MatrixView(rowMajor: a.baseAddress!, rows: m, columns: k),
                           MatrixView(rowMajor: a.baseAddress!, rows: k, columns: m).transposed]
            for av in layouts {
                let bv = MatrixView(rowMajor: b.baseAddress!, rows: k, columns: n)
                let first = expectIdentical("GEMM \(m)×\(k)·\(k)×\(n)") { tile, kernels in
                    var c = c0
                    c.withUnsafeMutableBufferPointer {
                        GEMM.multiply(av, bv, into: $0.baseAddress!, ldc: n, accumulate: true, threads: 3,
                                      kernels: kernels, tile: tile)
                    }
                    return c
                }
                #expect(relativeError(first, zip(GEMM.reference(av, bv), c0).map { $0 + $1 }) < 1e-5)
            }
        } }
    }
}

/// Choosing tiles by measurement: every tunable layer is measured once and reported, what is known is not measured
/// again, a spent budget leaves the built-in tile, and no choice changes a result.
struct TileTuningTests {
    func compile(_ tuning: TileTuning) throws -> CompiledGraph {
        let graph = CompilerTests().network()
        var rng = SeededRandom(41)
        var weights: [String: [Float]] = [:]
        for spec in graph.parameters {
            weights[spec.name] = spec.name.hasSuffix("running_var") ? rng.array(spec.count, 0.5, 2)
                : rng.array(spec.count)
        }
        return try CompiledGraph(graph: graph, algorithms: .winogradWherePossible, usualInputSize: 12,
                                 tiles: tuning) { weights[$0]! }
    }

    @Test func measuresEachLayerOnceAndKeepsResultsBitwise() throws {
        let announced = Locked<[Int]>([]), recorded = Locked<[String: TileShape]>([:])
        let tuning = TileTuning(measure: true, budget: 60, announce: { n in announced.withLock { $0.append(n) } },
                                record: { new in recorded.withLock { $0.merge(new) { $1 } } })
        let tuned = try compile(tuning)
        let keys = Set(tuned.tiles.map(\.key))
        let candidates = Kernels.current.tiles
        // Linear, merged siblings, Winograd and direct layers: each distinct key once.
        #expect(tuned.tiles.count >= 5 && keys.count >= 4)
        #expect(keys.contains { $0.hasSuffix("winograd F(4,3)") || $0.hasSuffix("winograd F(6,3)") })
        if candidates.count > 1 {
            #expect(announced.withLock { $0 } == [keys.count])
            #expect(Set(recorded.withLock { $0.keys }) == keys)
            #expect(tuned.tiles.allSatisfy { $0.measured && candidates.contains($0.tile) })
        } else {
            // One candidate (baseline x86-64): nothing to measure.
            #expect(announced.withLock { $0 }.isEmpty && tuned.tiles.allSatisfy { !$0.measured })
        }
        let builtIn = try compile(.builtIn)
        #expect(builtIn.tiles.allSatisfy { !$0.measured && $0.tile == Kernels.current.builtInTile })
        var rng = SeededRandom(8)
        for shape in [(1, 12, 12), (3, 9, 14)] {
            let input = rng.tensor([shape.0, shape.1, shape.2, 6])
            #expect(try tuned.run(input, threads: 2) == builtIn.run(input, threads: 2))
        }
    }

    @Test func knownTilesAreNotMeasuredAndABudgetBounds() throws {
        let keys = try compile(.builtIn).tiles.map(\.key)
        let other = Kernels.current.tiles.last!
        let announced = Locked(0)
        let known = TileTuning(known: Dictionary(keys.map { ($0, other) }) { a, _ in a }, measure: true,
                               announce: { _ in announced.withLock { $0 += 1 } })
        let compiled = try compile(known)
        #expect(announced.withLock { $0 } == 0)
        #expect(compiled.tiles.allSatisfy { $0.tile == other && $0.measured })
        // A tile this level does not offer (from a hand-edited table) is not used.
        let foreign = TileShape.all.first { !Kernels.current.tiles.contains($0) }!
        let ignored = try compile(TileTuning(known: [keys[0]: foreign], measure: false))
        #expect(ignored.tiles.allSatisfy { !$0.measured && $0.tile == Kernels.current.builtInTile })
        // No time left: nothing measured, nothing recorded, the built-in tile.
        let recorded = Locked<[String: TileShape]>(["sentinel": other])
        let spent = try compile(TileTuning(measure: true, budget: 0, record: { new in recorded.withLock { $0 = new } }))
        #expect(spent.tiles.allSatisfy { !$0.measured })
        #expect(recorded.withLock { $0.isEmpty } || Kernels.current.tiles.count == 1)
    }

    @Test func tileNamesRoundTrip() {
        for tile in TileShape.all { #expect(TileShape(tile.description) == tile) }
        #expect(TileShape("6×32") == TileShape(rows: 6, panels: 2))
        #expect(TileShape("6x32") == nil && TileShape("5×16") == nil && TileShape("6×48") == nil)
    }
}
