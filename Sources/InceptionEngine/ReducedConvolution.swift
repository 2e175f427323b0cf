import CInceptionReduced
import Foundation
import CInceptionSystem
import InceptionKernels

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
    let kernel: ReducedMicroKernel
    /// Rows of one tile (6 for the vector tiles, 32 for AMX's) and a panel's depth in words (padded for AMX).
    let tileRows: Int, depthWords: Int
    let vectorEncode: Bool

    package var panelCount: Int { (geometry.outChannels + 15) / 16 }
    var wordGeometry: ConvGeometry { var g = geometry; g.inChannels = wordsPerPixel; return g }

    /// bf16 from fp32 weights (OIHW, BatchNorm folded), rounded to bf16 as they are; `scale` (Inception-ResNet's
    /// residual scale) multiplies the fp32 sum and bias in the epilogue, as the network computes it.
    package init(bf16 g: ConvGeometry, weights: [Float], bias: [Float]?, scale: Float = 1, activation: Activation,
                kernels: ReducedKernels = .current) {
        guard let kernel = kernels.bf16 else { preconditionFailure("this CPU runs no bf16 kernel") }
        let wordsPerPixel = (g.inChannels + 1) / 2
        let panels = Self.pack(g, wordsPerPixel: wordsPerPixel, valuesPerWord: 2, kernels) { o, channel, tap, k in
            guard channel < g.inChannels else { return 0 }
            let w = weights[(o * g.inChannels + channel) * g.taps + tap]
            return UInt32(ReducedReference.bf16Bits(w)) << (16 * k)
        }
        let outputScale = scale == 1 ? nil : [Float](repeating: scale, count: (g.outChannels + 15) / 16 * 16)
        self.init(g, activation, .bf16, valuesPerWord: 2, wordsPerPixel: wordsPerPixel, words: nil, panels: panels,
                  bias: (bias ?? []).map { $0 * scale }, outputScale: outputScale, padding: 0, inverseScale: 1,
                  zeroPoint: 0, kernel: kernel, kernels: kernels)
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
                  zeroPoint: Float(p.inputZeroPoint), kernel: kernels.int8.kernel, kernels: kernels)
    }

    private init(_ g: ConvGeometry, _ activation: Activation, _ precision: Precision, valuesPerWord: Int,
                 wordsPerPixel: Int, words: Int8Words?, panels: [UInt32], bias: [Float], outputScale: [Float]?,
                 padding: UInt32, inverseScale: Float, zeroPoint: Float, kernel: @escaping ReducedMicroKernel,
                 kernels: ReducedKernels) {
        (geometry, self.activation, self.precision, self.valuesPerWord) = (g, activation, precision, valuesPerWord)
        (self.wordsPerPixel, self.words, self.panels, self.outputScale) = (wordsPerPixel, words, panels, outputScale)
        var padded = [Float](repeating: 0, count: (g.outChannels + 15) / 16 * 16)
        for (o, b) in bias.enumerated() where o < g.outChannels { padded[o] = b }
        self.bias = padded
        self.padding = [UInt32](repeating: padding, count: wordsPerPixel)
        (self.inverseScale, self.zeroPoint) = (inverseScale, zeroPoint)
        self.kernel = kernel
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
        let (kernel, depth, relu, out) = (self.kernel, depthWords, activation == .relu, g.outChannels)
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
                    kernel(a, t.taps, t.channels, w.value + t.panels.lowerBound * depth * 16, depth, t.panels.count,
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
