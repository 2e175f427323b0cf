import CInceptionReduced
import InceptionEngine
import Testing

/// The AMX tile layer's operations (configure, load, store, zero, TDPBF16PS, TDPBUSD) on each backend this CPU has —
/// the emulator everywhere, the instructions where there is AMX — against `TileModel`, a naive Swift model of what
/// the tile unit computes (the semantics `scripts/amx_numerics.c` measured on the Xeon), on
/// random shapes, values from denormal to overflowing, and chained products. The convolutions built on the layer are
/// checked in ReducedPrecisionTests.
struct AMXTests {
    /// One trial: a random palette-1 configuration of the convolution tile's assignment (C in 0–3, A in 4–5, B in
    /// 6–7) with M rows, N columns and K pairs or quads; C, A and B loaded from strided memory; `calls` products into
    /// each C; every C stored.
    struct Trial {
        var m: Int, n: Int, k: Int, calls: Int
        var c: [[UInt8]], a: [[UInt8]], b: [[UInt8]]
    }

    static func trial(_ rng: inout SplitMix64, bf16: Bool, exponents: ClosedRange<Int>,
                      accumulator: ClosedRange<Int>) -> Trial {
        let (m, n, k) = (Int(rng.next() % 16) + 1, Int(rng.next() % 16) + 1, Int(rng.next() % 16) + 1)
        func bytes(_ count: Int, _ value: (inout SplitMix64) -> UInt32) -> [UInt8] {
            (0..<count).flatMap { _ in withUnsafeBytes(of: value(&rng).littleEndian) { Array($0) } }
        }
        let c = (0..<4).map { _ in bytes(m * n) { bf16 ? randomFloat(&$0, accumulator).bitPattern
                                                       : UInt32(truncatingIfNeeded: $0.next()) } }
        let pairs: (inout SplitMix64) -> UInt32 = { r in
            bf16 ? UInt32(randomBF16(&r, exponents)) | UInt32(randomBF16(&r, exponents)) << 16
                 : UInt32(truncatingIfNeeded: r.next())
        }
        let a = (0..<2).map { _ in bytes(m * k, pairs) }, b = (0..<2).map { _ in bytes(k * n, pairs) }
        return Trial(m: m, n: n, k: k, calls: Int(rng.next() % 3) + 1, c: c, a: a, b: b)
    }

    /// A bf16 with exponent in `exponents` (below −126: a denormal) and random sign and mantissa.
    static func randomBF16(_ rng: inout SplitMix64, _ exponents: ClosedRange<Int>) -> UInt16 {
        let e = exponents.lowerBound + Int(rng.next() % UInt64(exponents.count))
        let sign = UInt16(rng.next() & 1) << 15, mantissa = UInt16(rng.next() & 0x7F)
        return e < -126 ? sign | mantissa : sign | UInt16(e + 127) << 7 | mantissa
    }

    static func randomFloat(_ rng: inout SplitMix64, _ exponents: ClosedRange<Int>) -> Float {
        let e = exponents.lowerBound + Int(rng.next() % UInt64(exponents.count))
        let sign = UInt32(rng.next() & 1) << 31, mantissa = UInt32(truncatingIfNeeded: rng.next()) & 0x7F_FFFF
        return Float(bitPattern: e < -126 ? sign | mantissa : sign | UInt32(e + 127) << 23 | mantissa)
    }

    /// The trial on a backend: the four C tiles as stored.
    static func run(_ t: Trial, bf16: Bool, on backend: AMXBackend) -> [[UInt8]] {
        let code = backend.code
        var config = inception_amx_config()
        config.palette = 1
        let (rows, columns) = TileModel.shape(t)
        withUnsafeMutableBytes(of: &config.rows) { r in for i in 0..<8 { r[i] = UInt8(rows[i]) } }
        withUnsafeMutableBytes(of: &config.colsb) { c in
            for i in 0..<8 { c.storeBytes(of: UInt16(columns[i]), toByteOffset: 2 * i, as: UInt16.self) }
        }
        inception_amx_configure(code, &config)
        defer { inception_amx_release(code) }
        // Sources at a stride wider than their rows (the last 8 bytes of each row are never read).
        func load(_ tile: Int, _ bytes: [UInt8]) {
            let width = columns[tile], stride = width + 8
            var source = [UInt8](repeating: 0xEE, count: rows[tile] * stride)
            for r in 0..<rows[tile] {
                source[(r * stride)..<(r * stride + width)] = bytes[(r * width)..<((r + 1) * width)]
            }
            source.withUnsafeBytes { inception_amx_load(code, Int32(tile), $0.baseAddress!, stride) }
        }
        for i in 0..<4 { load(i, t.c[i]) }
        for i in 0..<2 { load(4 + i, t.a[i]); load(6 + i, t.b[i]) }
        for _ in 0..<t.calls {
            for (c, a, b) in TileModel.products {
                bf16 ? inception_amx_dpbf16ps(code, Int32(c), Int32(a), Int32(b))
                     : inception_amx_dpbusd(code, Int32(c), Int32(a), Int32(b))
            }
        }
        return (0..<4).map { tile in
            var out = [UInt8](repeating: 0, count: rows[tile] * columns[tile])
            out.withUnsafeMutableBytes { inception_amx_store(code, Int32(tile), $0.baseAddress!, columns[tile]) }
            return out
        }
    }

    /// The amx_numerics.c cases: ordinary values, wide exponents, denormal inputs and products, overflow.
    static let bf16Ranges: [(values: ClosedRange<Int>, accumulator: ClosedRange<Int>)] = [
        (-4...4, -4...4), (-2...2, 8...10), (-30...30, -60...60), (-140...(-120), -4...4), (-66...(-60), -130...(-120)),
        (60...64, 120...127),
    ]

    @Test(arguments: AMX.backends)
    func tileOperationsMatchTheNaiveModel(_ backend: AMXBackend) {
        var rng = SplitMix64(1602)
        for bf16 in [true, false] {
            for (values, accumulator) in Self.bf16Ranges.prefix(bf16 ? 6 : 1) {
                for _ in 0..<20 {
                    let t = Self.trial(&rng, bf16: bf16, exponents: values, accumulator: accumulator)
                    var model = TileModel(t)
                    for _ in 0..<t.calls { model.products(bf16: bf16) }
                    let got = Self.run(t, bf16: bf16, on: backend)
                    let differ = zip(got, model.stored).reduce(0) { $0 + zip($1.0, $1.1).filter { $0 != $1 }.count }
                    #expect(differ == 0, "\(bf16 ? "TDPBF16PS" : "TDPBUSD") \(values) m \(t.m) n \(t.n) k \(t.k)")
                }
            }
        }
    }

    /// A zeroed tile stores zeros, whatever was loaded before.
    @Test(arguments: AMX.backends)
    func zeroClearsATile(_ backend: AMXBackend) {
        let code = backend.code
        var config = inception_amx_config()
        config.palette = 1
        config.rows.0 = 16
        config.colsb.0 = 64
        inception_amx_configure(code, &config)
        defer { inception_amx_release(code) }
        let ones = [UInt8](repeating: 0xFF, count: 1024)
        var out = [UInt8](repeating: 7, count: 1024)
        ones.withUnsafeBytes { inception_amx_load(code, 0, $0.baseAddress!, 64) }
        inception_amx_zero(code, 0)
        out.withUnsafeMutableBytes { inception_amx_store(code, 0, $0.baseAddress!, 64) }
        #expect(out.allSatisfy { $0 == 0 })
    }

    @Test(.enabled(if: AMX.instructionsUsable, "AMX: not on this CPU"))
    func instructionsMatchTheEmulator() {
        var rng = SplitMix64(207)
        for bf16 in [true, false] {
            for (values, accumulator) in Self.bf16Ranges {
                let t = Self.trial(&rng, bf16: bf16, exponents: values, accumulator: accumulator)
                let same = Self.run(t, bf16: bf16, on: .instructions) == Self.run(t, bf16: bf16, on: .emulator)
                #expect(same, "\(bf16 ? "TDPBF16PS" : "TDPBUSD") \(values) m \(t.m) n \(t.n) k \(t.k)")
            }
        }
    }
}

/// What the tile unit computes, written naively in Swift from the measured semantics: each tile its configured rows
/// of its configured bytes; TDPBF16PS per output two fresh fp32 partial sums over the pairs (each step a rounded
/// fused multiply-add, denormal inputs and results zero), then c + (even + odd); TDPBUSD exact wrapping sums.
struct TileModel {
    static let products = [(0, 4, 6), (1, 4, 7), (2, 5, 6), (3, 5, 7)]
    var c: [[UInt8]], a: [[UInt8]], b: [[UInt8]]
    let m: Int, n: Int, k: Int

    init(_ t: AMXTests.Trial) { (c, a, b, m, n, k) = (t.c, t.a, t.b, t.m, t.n, t.k) }

    /// Rows and bytes per row of tiles 0–7.
    static func shape(_ t: AMXTests.Trial) -> (rows: [Int], columns: [Int]) {
        ([t.m, t.m, t.m, t.m, t.m, t.m, t.k, t.k],
         [Int](repeating: 4 * t.n, count: 4) + [4 * t.k, 4 * t.k, 4 * t.n, 4 * t.n])
    }

    var stored: [[UInt8]] { c }

    mutating func products(bf16: Bool) {
        for (ci, ai, bi) in Self.products {
            for row in 0..<m {
                for column in 0..<n {
                    let at = (row * n + column) * 4
                    let old = word(c[ci], at)
                    let new = bf16 ? bf16Product(old, a[ai - 4], b[bi - 6], row, column).bitPattern
                                   : int8Product(old, a[ai - 4], b[bi - 6], row, column)
                    for i in 0..<4 { c[ci][at + i] = UInt8(truncatingIfNeeded: new >> (8 * UInt32(i))) }
                }
            }
        }
    }

    private func word(_ bytes: [UInt8], _ at: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * UInt32($1)) }
    }

    private func flushed(_ x: Float) -> Float {
        abs(x) < Float.leastNormalMagnitude ? (x.sign == .minus ? -0.0 : 0) : x
    }

    /// Element `i` (a bf16) of a row of `width` words.
    private func element(_ bytes: [UInt8], _ row: Int, _ i: Int, width: Int) -> Float {
        let at = row * width * 4 + 2 * i
        return flushed(Float(bitPattern: UInt32(bytes[at]) << 16 | UInt32(bytes[at + 1]) << 24))
    }

    private func bf16Product(_ old: UInt32, _ a: [UInt8], _ b: [UInt8], _ row: Int, _ column: Int) -> Float {
        var even: Float = 0, odd: Float = 0
        for pair in 0..<k {
            even = flushed(even.addingProduct(element(a, row, 2 * pair, width: k),
                                              element(b, pair, 2 * column, width: n)))
            odd = flushed(odd.addingProduct(element(a, row, 2 * pair + 1, width: k),
                                            element(b, pair, 2 * column + 1, width: n)))
        }
        return flushed(flushed(Float(bitPattern: old)) + flushed(even + odd))
    }

    private func int8Product(_ old: UInt32, _ a: [UInt8], _ b: [UInt8], _ row: Int, _ column: Int) -> UInt32 {
        var sum = old
        for quad in 0..<k {
            for j in 0..<4 {
                let x = Int32(a[(row * k + quad) * 4 + j]), y = Int32(Int8(bitPattern: b[(quad * n + column) * 4 + j]))
                sum = sum &+ UInt32(bitPattern: x * y)
            }
        }
        return sum
    }
}
