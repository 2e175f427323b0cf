import CInceptionReduced
import Foundation
import CInceptionSystem
import InceptionKernels

/// The arithmetic a model's convolutions run in. Every other operation (pools, concatenation, residual additions,
/// BatchNorm outside a convolution, linear layers) stays in fp32, and so do the convolutions' epilogues.
public enum Precision: String, Sendable, Hashable, CaseIterable {
    case fp32
    /// Weights packed once as bfloat16, each convolution's input rounded to bfloat16 (to nearest even), products
    /// summed in fp32.
    case bf16
    /// Post-training static quantisation: per-output-channel symmetric s8 weights, u8 activations with a scale and
    /// zero point per layer input from calibration, int32 sums; the model's first convolution stays fp32.
    case int8
}

/// Why a model cannot be compiled at a precision, in one line.
public enum PrecisionError: Error, Equatable, CustomStringConvertible {
    case unsupported(String)
    case needsQuantizedWeights

    public var description: String {
        switch self {
        case let .unsupported(reason): return reason
        case .needsQuantizedWeights:
            return "int8 needs a quantised checkpoint (int8 weights with calibrated input scales); "
                + "these weights are fp32"
        }
    }
}

/// How an int8 layer's 32-bit words hold activations and weights.
package enum Int8Words: String, Sendable {
    /// Four u8 activations / four s8 weights a word (VPDPBUSD, and the Swift reference).
    case quads
    /// Two activations / two weights a word, as 16-bit integers (VPMADDWD on AVX2: exact where VPMADDUBSW's 16-bit
    /// pair sums saturate).
    case pairs

    var valuesPerWord: Int { self == .quads ? 4 : 2 }
}

/// The reduced-precision tiles one instruction-set level runs, chosen with it (`Kernels.current`).
package struct ReducedKernels: Sendable {
    package let bf16: ReducedTile?
    package let int8: (words: Int8Words, tile: ReducedTile)
    /// What runs int8 and bf16, for `inception summary` and the benchmark tables.
    package let int8Name: String, bf16Name: String?
    /// The instruction-set level these tiles were chosen for.
    package let level: String
    /// The AMX tile layer's backend when the tiles are AMX's (32-row tiles over a depth padded to whole tile rows),
    /// nil for the vector tiles (6 rows).
    package let amx: AMXBackend?
    /// Whether the inputs are converted with VCVTNEPS2BF16 (AVX512-BF16) and quantised with AVX2; else in plain C
    /// or Swift.
    let vectorBF16: Bool, vectorQuantize: Bool

    /// Rows of one tile, and the multiple of 32-bit words a panel's depth is padded to.
    var tileRows: Int { amx == nil ? 6 : 32 }
    var depthMultiple: Int { amx == nil ? 1 : 16 }

    /// Why these tiles run no bf16, in one line; nil when they do.
    package var bf16Problem: String? {
        guard bf16 == nil else { return nil }
        if level != "avx512" && Kernels.supported.contains(where: { $0.name == "avx512" }) {
            return "bf16 needs the avx512 kernel level (INCEPTION_ISA=\(level) forbids it)"
        }
        return "bf16 needs AVX512-BF16 (VDPBF16PS) or AMX, which this CPU does not have"
    }

    /// Bits of `inception_cpu_reduced_precision`: 1 AVX512-BF16, 2 AVX512-VNNI, 4 AMX-BF16, 8 AVX-VNNI;
    /// `INCEPTION_NO_AVX_VNNI=1` hides AVX-VNNI (to run and time the AVX2 route on a CPU that has both).
    package static let cpuFeatures = Int(inception_cpu_reduced_precision())
        & (ProcessInfo.processInfo.environment["INCEPTION_NO_AVX_VNNI"] == "1" ? ~8 : ~0)

    /// The tiles for `level`: AMX's for bf16 and int8 where `amx` names a backend (`AMX.backend`: the instructions
    /// where the CPU has them); else bf16 needs AVX512-BF16 at the AVX-512 level, and int8 takes VNNI at the AVX-512
    /// level, AVX-VNNI or else VPMADDWD at AVX2, the Swift reference below that.
    package static func forLevel(_ level: KernelTable, features cpuFeatures: Int = cpuFeatures,
                                amx: AMXBackend? = AMX.backend) -> ReducedKernels {
        let avx512 = level.name == "avx512", avx2 = level.name == "avx2"
        let vectorBF16 = avx512 && cpuFeatures & 1 != 0
        func kernels(bf16: ReducedTile?, _ words: Int8Words, _ int8: @escaping ReducedTile, _ int8Name: String,
                     bf16Name: String? = "avx512-bf16", amx: AMXBackend? = nil) -> ReducedKernels {
            ReducedKernels(bf16: bf16, int8: (words, int8), int8Name: int8Name, bf16Name: bf16 == nil ? nil : bf16Name,
                           level: level.name, amx: amx, vectorBF16: vectorBF16, vectorQuantize: avx2 || avx512)
        }
        if let amx {
            return kernels(bf16: AMXTiles.bf16(amx), .quads, AMXTiles.int8(amx), "amx-int8", bf16Name: "amx-bf16",
                           amx: amx)
        }
        let bf16Tile: ReducedTile = { a, taps, words, w, panelWords, panels, sums in
            inception_bf16_tile_avx512(c(a), taps, words, w, panelWords, panels, sums)
        }
        let bf16 = vectorBF16 ? bf16Tile : nil
        if avx512 && cpuFeatures & 2 != 0 {
            return kernels(bf16: bf16, .quads, { a, taps, words, w, panelWords, panels, sums in
                inception_int8_quads_tile_vnni(c(a), taps, words, w, panelWords, panels, sums)
            }, "avx512-vnni")
        }
        if (avx2 || avx512) && cpuFeatures & 8 != 0 {
            return kernels(bf16: bf16, .quads, { a, taps, words, w, panelWords, panels, sums in
                inception_int8_quads_tile_avxvnni(c(a), taps, words, w, panelWords, panels, sums)
            }, "avx-vnni")
        }
        if avx2 || avx512 {
            return kernels(bf16: bf16, .pairs, { a, taps, words, w, panelWords, panels, sums in
                inception_int8_pairs_tile_avx2(c(a), taps, words, w, panelWords, panels, sums)
            }, "avx2")
        }
        return kernels(bf16: nil, .quads, ReducedReference.int8QuadsTile, "reference")
    }

    /// The tiles at the level every layer runs at.
    package static let current = forLevel(Kernels.current)

    static func c(_ a: UnsafePointer<UnsafePointer<UInt32>>) -> UnsafePointer<UnsafePointer<UInt32>?> {
        UnsafeRawPointer(a).assumingMemoryBound(to: UnsafePointer<UInt32>?.self)
    }
}

/// The AMX convolution tiles (32 rows × pairs of 16-channel panels, `inception_amx_*_tile`) on one backend, as
/// `ReducedTile`s: `panelWords` is the panel's depth padded to whole tile rows of 16 words.
enum AMXTiles {
    static func bf16(_ backend: AMXBackend) -> ReducedTile {
        let code = backend.code
        return { a, taps, words, w, panelWords, panels, sums in
            inception_amx_bf16_tile(code, ReducedKernels.c(a), taps, words, w, panelWords, panels, sums)
        }
    }

    static func int8(_ backend: AMXBackend) -> ReducedTile {
        let code = backend.code
        return { a, taps, words, w, panelWords, panels, sums in
            inception_amx_int8_tile(code, ReducedKernels.c(a), taps, words, w, panelWords, panels, sums)
        }
    }
}

/// A precision checked once against this CPU, with the tiles that run it: the one place a precision is refused
/// (`PrecisionError.unsupported`, one line naming what the CPU lacks), and what the compiler takes. (int8 also needs
/// a quantised checkpoint; that is the weights' fault, `PrecisionError.needsQuantizedWeights`, found with them.)
public struct PrecisionRoute: Sendable {
    public let precision: Precision
    package let kernels: ReducedKernels

    /// `precision` on this CPU's tiles; throws if the CPU cannot run it.
    public init(_ precision: Precision) throws(PrecisionError) { try self.init(precision, kernels: .current) }

    package init(_ precision: Precision, kernels: ReducedKernels) throws(PrecisionError) {
        if precision == .bf16, let problem = kernels.bf16Problem { throw .unsupported(problem) }
        (self.precision, self.kernels) = (precision, kernels)
    }

    /// fp32, which every CPU runs.
    public static let fp32 = try! PrecisionRoute(.fp32)

    /// What runs the convolutions' multiplies: the reduced-precision route (`amx-bf16`, `avx512-vnni`, …), or the
    /// kernel level for fp32.
    public var name: String {
        switch precision {
        case .fp32: return kernels.level
        case .bf16: return kernels.bf16Name!
        case .int8: return kernels.int8Name
        }
    }
}

/// One convolution's int8 parameters, as a quantised checkpoint stores them (before BatchNorm is folded).
package struct Int8Weights: Sendable {
    /// OIHW, `weight ≈ q · weightScales[o]`.
    package var q: [Int8]
    package var weightScales: [Float]
    /// `x ≈ (u − inputZeroPoint) · inputScale` for the layer's u8 input `u`.
    package var inputScale: Float
    package var inputZeroPoint: Int

    package init(q: [Int8], weightScales: [Float], inputScale: Float, inputZeroPoint: Int) {
        (self.q, self.weightScales) = (q, weightScales)
        (self.inputScale, self.inputZeroPoint) = (inputScale, inputZeroPoint)
    }
}

/// A convolution in bf16 or int8: the implicit GEMM of `PackedConvolution` (same schedule, same indirection) over
/// the layer's input first encoded as 32-bit words — two bf16, four u8 or two u16 channels a word, the channels
/// padded to a whole word — against weights packed once in the same word layout (16-channel panels, a word per
/// output channel per depth word). The epilogue is fp32: sum × per-channel scale (int8) + bias, + residual, ReLU.
package struct ReducedConvolution: Sendable {
    package let geometry: ConvGeometry
    package let activation: Activation
    package let precision: Precision
    let valuesPerWord: Int, wordsPerPixel: Int
    let words: Int8Words?
    let panels: [UInt32]
    let bias: [Float]
    /// Per output channel, what the sum is multiplied by: int8, what one unit of the integer sum is worth; bf16, the
    /// residual scale (nil when 1).
    let outputScale: [Float]?
    /// One pixel of the encoded input at 0.0: the padding the indirection table points at.
    let padding: [UInt32]
    let inverseScale: Float, zeroPoint: Float
    let tile: ReducedTile
    /// Rows of one tile (6 for the vector tiles, 32 for AMX's) and a panel's depth in words (padded for AMX).
    let tileRows: Int, depthWords: Int
    let vectorEncode: Bool

    package var panelCount: Int { (geometry.outChannels + 15) / 16 }
    var wordGeometry: ConvGeometry { var g = geometry; g.inChannels = wordsPerPixel; return g }

    /// bf16 from fp32 weights (OIHW, BatchNorm folded), rounded to bf16 as they are; `scale` (Inception-ResNet's
    /// residual scale) multiplies the fp32 sum and bias in the epilogue, as the network computes it.
    package init(bf16 g: ConvGeometry, weights: [Float], bias: [Float]?, scale: Float = 1, activation: Activation,
                kernels: ReducedKernels = .current) {
        guard let tile = kernels.bf16 else { preconditionFailure("this CPU runs no bf16 kernel") }
        let wordsPerPixel = (g.inChannels + 1) / 2
        let panels = Self.pack(g, wordsPerPixel: wordsPerPixel, valuesPerWord: 2, kernels) { o, channel, tap, k in
            guard channel < g.inChannels else { return 0 }
            let w = weights[(o * g.inChannels + channel) * g.taps + tap]
            return UInt32(ReducedReference.bf16Bits(w)) << (16 * k)
        }
        let outputScale = scale == 1 ? nil : [Float](repeating: scale, count: (g.outChannels + 15) / 16 * 16)
        self.init(g, activation, .bf16, valuesPerWord: 2, wordsPerPixel: wordsPerPixel, words: nil, panels: panels,
                  bias: (bias ?? []).map { $0 * scale }, outputScale: outputScale, padding: 0, inverseScale: 1,
                  zeroPoint: 0, tile: tile, kernels: kernels)
    }

    /// int8 from a quantised checkpoint's integers: the layer computes
    /// `Σ (u − z) · q · inputScale · weightScales[o] · channelScale[o] · scale + bias[o] · scale`, where
    /// `channelScale` is the folded BatchNorm's multiplier (all ones without one) and `bias` its shift.
    package init(int8 g: ConvGeometry, weights p: Int8Weights, channelScale: [Float], bias: [Float]?,
                scale: Float = 1, activation: Activation, kernels: ReducedKernels = .current) {
        let words = kernels.int8.words, perWord = kernels.int8.words.valuesPerWord
        let wordsPerPixel = (g.inChannels + perWord - 1) / perWord
        let panels = Self.pack(g, wordsPerPixel: wordsPerPixel, valuesPerWord: perWord, kernels) { o, channel, tap, k in
            guard channel < g.inChannels else { return 0 }
            let q = p.q[(o * g.inChannels + channel) * g.taps + tap]
            return words == .quads ? UInt32(UInt8(bitPattern: q)) << (8 * k)
                : UInt32(UInt16(bitPattern: Int16(q))) << (16 * k)
        }
        let count = (g.outChannels + 15) / 16 * 16
        var outputScale = [Float](repeating: 0, count: count), shift = [Float](repeating: 0, count: count)
        for o in 0..<g.outChannels {
            outputScale[o] = p.inputScale * p.weightScales[o] * channelScale[o] * scale
            let sum = p.q[(o * g.depth)..<((o + 1) * g.depth)].reduce(0) { $0 + Int($1) }
            shift[o] = (bias?[o] ?? 0) * scale - outputScale[o] * Float(p.inputZeroPoint * sum)
        }
        let z = UInt32(p.inputZeroPoint)
        self.init(g, activation, .int8, valuesPerWord: perWord, wordsPerPixel: wordsPerPixel, words: words,
                  panels: panels, bias: shift, outputScale: outputScale,
                  padding: words == .quads ? z * 0x0101_0101 : z | z << 16, inverseScale: 1 / p.inputScale,
                  zeroPoint: Float(p.inputZeroPoint), tile: kernels.int8.tile, kernels: kernels)
    }

    private init(_ g: ConvGeometry, _ activation: Activation, _ precision: Precision, valuesPerWord: Int,
                 wordsPerPixel: Int, words: Int8Words?, panels: [UInt32], bias: [Float], outputScale: [Float]?,
                 padding: UInt32, inverseScale: Float, zeroPoint: Float, tile: @escaping ReducedTile,
                 kernels: ReducedKernels) {
        (geometry, self.activation, self.precision, self.valuesPerWord) = (g, activation, precision, valuesPerWord)
        (self.wordsPerPixel, self.words, self.panels, self.outputScale) = (wordsPerPixel, words, panels, outputScale)
        var padded = [Float](repeating: 0, count: (g.outChannels + 15) / 16 * 16)
        for (o, b) in bias.enumerated() where o < g.outChannels { padded[o] = b }
        self.bias = padded
        self.padding = [UInt32](repeating: padding, count: wordsPerPixel)
        (self.inverseScale, self.zeroPoint) = (inverseScale, zeroPoint)
        self.tile = tile
        (tileRows, depthWords) = (kernels.tileRows, Self.depthWords(g, wordsPerPixel, kernels))
        vectorEncode = precision == .bf16 ? kernels.vectorBF16 : kernels.vectorQuantize
    }

    /// Panels of 16 output channels, per tap and depth word a word per channel: `value(o, channel, tap, k)` is
    /// input channel `channel`'s part of the word, at position k in it, already shifted into place. Each panel's
    /// depth is padded with zero words to the kernels' multiple (AMX: whole tile rows).
    private static func pack(_ g: ConvGeometry, wordsPerPixel: Int, valuesPerWord: Int, _ kernels: ReducedKernels,
                             _ value: (_ o: Int, _ channel: Int, _ tap: Int, _ k: Int) -> UInt32) -> [UInt32] {
        let panelCount = (g.outChannels + 15) / 16, depthWords = depthWords(g, wordsPerPixel, kernels)
        var panels = [UInt32](repeating: 0, count: panelCount * depthWords * 16)
        for p in 0..<panelCount {
            var i = p * depthWords * 16
            for tap in 0..<g.taps {
                for word in 0..<wordsPerPixel {
                    for lane in 0..<16 where p * 16 + lane < g.outChannels {
                        var w: UInt32 = 0
                        for k in 0..<valuesPerWord { w |= value(p * 16 + lane, word * valuesPerWord + k, tap, k) }
                        panels[i + lane] = w
                    }
                    i += 16
                }
            }
        }
        return panels
    }

    private static func depthWords(_ g: ConvGeometry, _ wordsPerPixel: Int, _ kernels: ReducedKernels) -> Int {
        let m = kernels.depthMultiple
        return (g.taps * wordsPerPixel + m - 1) / m * m
    }
}

extension ReducedConvolution {
    /// Floats of scratch one call needs for an `n × h × w` input: the encoded input, a word a float.
    package func scratchFloats(n: Int, h: Int, w: Int) -> Int { n * h * w * wordsPerPixel }

    /// output = activation(residual + conv(input) + bias), the output channels over `outputs` as in
    /// `PackedConvolution`; `scratch` holds `scratchFloats` floats.
    package func run(input: FeatureMap, outputs: [FeatureMap], residual: FeatureMap? = nil,
                    scratch: UnsafeMutablePointer<Float>, threads: Int) {
        let g = geometry
        g.checkShapes(input: input, outputs: outputs, residual: residual)
        encode(input, into: scratch, threads: threads)
        let (panelBases, panelStrides) = PackedConvolution.panelOutputs(outputs)
        let (tile, depth, relu, out) = (self.tile, depthWords, activation == .relu, g.outChannels)
        let (rows, words) = (tileRows, FeatureMap(base: scratch, n: input.n, h: input.h, w: input.w, c: wordsPerPixel))
        panels.withUnsafeBufferPointer { w in
        bias.withUnsafeBufferPointer { bias in
        (outputScale ?? []).withUnsafeBufferPointer { scale in
        padding.withUnsafeBufferPointer { padding in
        panelBases.withUnsafeBufferPointer { panelBases in
        panelStrides.withUnsafeBufferPointer { panelStrides in
            let (panelBases, panelStrides) = (UncheckedSendable(panelBases.baseAddress!),
                                              UncheckedSendable(panelStrides.baseAddress!))
            let w = UncheckedSendable(w.baseAddress!)
            // An empty array's buffer has a base address too: bf16 has no scale.
            let (bias, scale) = (UncheckedSendable(bias.baseAddress!),
                                 UncheckedSendable(outputScale == nil ? nil : scale.baseAddress))
            let zeros = UnsafeRawPointer(padding.baseAddress!).assumingMemoryBound(to: Float.self)
            wordGeometry.forEachTile(input: words, output: outputs[0], residual: residual, zeros: zeros,
                                     rows: rows, panelGroup: rows == 32 ? 2 : 1,
                                     panelBytes: depth * 64, panelCount: panelCount, threads: threads) { t in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: t.panels.count * rows * 16) { sums in
                    let sums = sums.baseAddress!
                    let a = UnsafeRawPointer(t.a).assumingMemoryBound(to: UnsafePointer<UInt32>.self)
                    tile(a, t.taps, t.channels, w.value + t.panels.lowerBound * depth * 16, depth, t.panels.count,
                         sums)
                    for (q, p) in t.panels.enumerated() {
                        let b = UnsafeRawPointer(bias.value + p * 16).loadUnaligned(as: SIMD16<Float>.self)
                        let s = scale.value.map { UnsafeRawPointer($0 + p * 16).loadUnaligned(as: SIMD16<Float>.self) }
                        let columns = min(16, out - p * 16)
                        for r in 0..<t.rows {
                            var v = UnsafeRawPointer(sums + (q * rows + r) * 16).loadUnaligned(as: SIMD16<Float>.self)
                            if let s { v = v * s }
                            v += b
                            let o = panelBases.value[p] + t.pixels[r] * panelStrides.value[p]
                            storeRow(v, o, t.residualRows.map { $0[r] + p * 16 }, columns, relu)
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

    /// The input as words: each pixel's channels rounded to bf16 or quantised, then padding to a whole word.
    func encode(_ x: FeatureMap, into scratch: UnsafeMutablePointer<Float>, threads: Int) {
        let (pixels, c, perPixel) = (x.pixels, x.c, wordsPerPixel * valuesPerWord)
        let chunk = max(1, 16384 / max(1, c)), chunks = (pixels + chunk - 1) / chunk
        let destination = UncheckedSendable(UnsafeMutableRawPointer(scratch))
        Parallel.parallelFor(chunks, threads: threads) { k in
            for i in (k * chunk)..<min(pixels, (k + 1) * chunk) {
                let source = x.base + i * x.pixelStride, d = destination.value + i * wordsPerPixel * 4
                encodePixel(source, c, d, perPixel)
            }
        }
    }

    @inline(__always)
    private func encodePixel(_ source: UnsafePointer<Float>, _ c: Int, _ d: UnsafeMutableRawPointer, _ perPixel: Int) {
        switch words {
        case nil:
            let d16 = d.assumingMemoryBound(to: UInt16.self)
            if vectorEncode {
                inception_bf16_from_float_avx512(source, d16, c)
            } else {
                inception_bf16_from_float(source, d16, c)
            }
            for j in c..<perPixel { d16[j] = 0 }
        case .quads?:
            let d8 = d.assumingMemoryBound(to: UInt8.self)
            if vectorEncode {
                inception_quantize_u8_avx2(source, d8, c, inverseScale, zeroPoint)
            } else {
                for j in 0..<c { d8[j] = UInt8(Self.quantize(source[j], inverseScale, zeroPoint)) }
            }
            for j in c..<perPixel { d8[j] = UInt8(zeroPoint) }
        case .pairs?:
            let d16 = d.assumingMemoryBound(to: UInt16.self)
            inception_quantize_u16_avx2(source, d16, c, inverseScale, zeroPoint)
            for j in c..<perPixel { d16[j] = UInt16(zeroPoint) }
        }
    }

    /// min(max(round(x · inverseScale) + zeroPoint, 0), 255), ties to even: the quantiser the C functions vectorise.
    package static func quantize(_ x: Float, _ inverseScale: Float, _ zeroPoint: Float) -> Float {
        min(max((x * inverseScale).rounded(.toNearestOrEven) + zeroPoint, 0), 255)
    }
}
