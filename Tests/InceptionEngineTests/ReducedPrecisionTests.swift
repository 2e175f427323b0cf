import Testing
import InceptionEngine
import InceptionKernels

/// bf16 and int8 convolutions: each C micro-kernel against its Swift reference, and whole layers against the plain
/// fp32 reference convolution run on the values the layer stands for (the inputs rounded to bf16, or the quantised
/// integers times their scales). Cases the CPU cannot run say so in their name when disabled.
struct ReducedPrecisionTests {
    static let bf16Kernels = ReducedKernels.forLevel(Kernels.supported[0], amx: nil)

    /// The AMX tiles on every backend this CPU has: the emulator everywhere, the instructions where there is AMX.
    static let amxRoutes = AMX.backends.map { ReducedKernels.forLevel(Kernels.supported[0], amx: $0) }

    /// Every bf16 route this CPU can run: AVX512-BF16 where present, and AMX's.
    static let bf16Routes = (bf16Kernels.bf16 == nil ? [] : [bf16Kernels]) + amxRoutes

    /// Every int8 route this CPU can run: AVX512-VNNI quads, AVX-VNNI quads, AVX2 pairs, the Swift reference's
    /// quads, and AMX's.
    static var int8Routes: [ReducedKernels] {
        let levels = Kernels.supported
        let avx2 = levels.filter { $0.name == "avx2" }.map { ReducedKernels.forLevel($0, features: [], amx: nil) }
        return levels.map { ReducedKernels.forLevel($0, amx: nil) } + avx2 + amxRoutes
    }

    /// The tiles on random words: the int8 routes bitwise equal to their references, bf16 within float rounding.
    @Test func tilesMatchTheirReferences() {
        var rng = SplitMix64(7)
        let (taps, words, panels) = (3, 11, 3)
        let a = (0..<(6 * taps)).map { _ in (0..<words).map { _ in UInt32(truncatingIfNeeded: rng.next()) } }
        // bf16 values from ordinary floats (random bits would include NaN and huge exponents).
        let floats = (0..<(6 * taps * words)).map { _ in rng.uniform(-2, 2) }
        let bf16A = (0..<(6 * taps)).map { r in (0..<words).map { i -> UInt32 in
            let x = floats[(r * words + i) % floats.count], y = floats[(r * words + i + 7) % floats.count]
            return UInt32(ReducedReference.bf16Bits(x)) | UInt32(ReducedReference.bf16Bits(y)) << 16
        } }
        let w = (0..<(panels * taps * words * 16)).map { _ in UInt32(truncatingIfNeeded: rng.next()) }
        let bf16W = w.map { UInt32(ReducedReference.bf16Bits(Float(Int32(truncatingIfNeeded: $0)) / 1e9))
                            | UInt32(ReducedReference.bf16Bits(Float($0 >> 8) / 1e7)) << 16 }
        for route in Self.int8Routes where route.amx == nil {
            let reference: ReducedMicroKernel = route.int8.words == .quads
                ? ReducedReference.int8QuadsMicroKernel : ReducedReference.int8PairsMicroKernel
            // Pairs hold u8 activations and s8 weights widened to 16 bits.
            let (aw, ww) = route.int8.words == .quads ? (a, w) : (a.map { $0.map { $0 & 0x00FF_00FF } },
                w.map { UInt32(UInt16(bitPattern: Int16(Int8(truncatingIfNeeded: $0))))
                        | UInt32(UInt16(bitPattern: Int16(Int8(truncatingIfNeeded: $0 >> 16)))) << 16 })
            #expect(run(route.int8.kernel, aw, ww, taps, words, panels) == run(reference, aw, ww, taps, words, panels),
                    "int8 \(route.int8Name)")
        }
        if let bf16 = Self.bf16Kernels.bf16 {
            let fast = run(bf16, bf16A, bf16W, taps, words, panels)
            let slow = run(ReducedReference.bf16MicroKernel, bf16A, bf16W, taps, words, panels)
            #expect(relativeError(fast, slow) < 1e-6)
        }
    }

    private func run(_ tile: ReducedMicroKernel, _ a: [[UInt32]], _ w: [UInt32], _ taps: Int, _ words: Int,
                     _ panels: Int) -> [Float] {
        var sums = [Float](repeating: .nan, count: panels * 96)
        let rows = a.map { row in
            let p = UnsafeMutablePointer<UInt32>.allocate(capacity: row.count)
            p.initialize(from: row, count: row.count)
            return UnsafePointer(p)
        }
        defer { rows.forEach { $0.deallocate() } }
        rows.withUnsafeBufferPointer { rows in
            w.withUnsafeBufferPointer { w in
                sums.withUnsafeMutableBufferPointer { s in
                    tile(rows.baseAddress!, taps, words, w.baseAddress!, taps * words, panels, s.baseAddress!)
                }
            }
        }
        return sums
    }

    /// Layers of every shape the networks have, with odd channel counts (padding inside the last word), strides,
    /// a residual, and outputs into a channel slice of a wider map.
    /// Two more for AMX: 1×1 layers whose depth fills whole tile rows (read in place, with a partial last tile).
    static let cases = ConvolutionKernelTests.cases + [
        ConvolutionKernelTests.Case(n: 1, h: 9, w: 8, cin: 64, cout: 40, kh: 1, kw: 1, stride: 1, ph: 0, pw: 0),
        ConvolutionKernelTests.Case(n: 2, h: 5, w: 7, cin: 128, cout: 16, kh: 1, kw: 1, stride: 1, ph: 0, pw: 0),
    ]

    /// Each bf16 route (AVX512-BF16 where the CPU has it; AMX through the emulator everywhere, and through the
    /// instructions where the CPU has them) against the reference convolution of the rounded values; AMX's two
    /// backends give the same bits.
    @Test(arguments: cases)
    func bf16LayerIsTheConvolutionOfRoundedValues(_ c: ConvolutionKernelTests.Case) {
        var rng = SplitMix64(UInt64(c.h * 131 + c.cin * 7 + c.cout))
        let g = geometry(c)
        let input = rng.tensor([c.n, c.h, c.w, c.cin])
        let weights = rng.array(g.outChannels * g.depth), bias = rng.array(c.cout)
        let scale: Float = 0.17
        let rounded = Tensor(shape: input.shape, scalars: input.scalars.map(roundedToBF16))
        let expected = Reference.convolution(rounded, weights: weights.map(roundedToBF16), bias: bias, geometry: g,
                                             scale: scale, activation: .relu)
        var amx: [[Float]] = []
        for kernels in Self.bf16Routes {
            let conv = ReducedConvolution(bf16: g, weights: weights, bias: bias, scale: scale, activation: .relu,
                                          kernels: kernels)
            for threads in [1, 2] {
                let out = run(conv, input, c, threads: threads)
                let label = "\(kernels.bf16Name!) \(kernels.amx.map { "\($0)" } ?? "")"
                #expect(relativeError(out, expected.scalars) < 1e-5, "\(label)")
                if kernels.amx != nil { amx.append(out) }
            }
        }
        #expect(amx.allSatisfy { $0 == amx[0] }, "AMX's instructions and its emulator (or thread counts) disagree")
    }

    /// Each int8 route against the reference convolution of the dequantised values, with and without a zero
    /// point, a BatchNorm multiplier and a residual; and every route gives the same floats bitwise.
    @Test(arguments: cases)
    func int8LayerIsTheConvolutionOfDequantisedValues(_ c: ConvolutionKernelTests.Case) {
        var rng = SplitMix64(UInt64(c.h * 17 + c.cin * 5 + c.cout))
        let g = geometry(c)
        for zeroPoint in [0, 131] {
            let input = rng.tensor([c.n, c.h, c.w, c.cin])
            let q = (0..<(g.outChannels * g.depth)).map { _ in Int8(Int(rng.next() % 255) - 127) }
            let weightScales = rng.array(c.cout, 0.001, 0.01), channelScale = rng.array(c.cout, 0.2, 0.4)
            let bias = rng.array(c.cout), residual = rng.tensor([c.n] + Array(outputShape(c)))
            let inputScale: Float = zeroPoint == 0 ? 1 / 255 : 2 / 255
            let p = Int8Weights(q: q, weightScales: weightScales, inputScale: inputScale, inputZeroPoint: zeroPoint)
            let dequantised = Tensor(shape: input.shape, scalars: input.scalars.map {
                (ReducedConvolution.quantize($0, 1 / inputScale, Float(zeroPoint)) - Float(zeroPoint)) * inputScale
            })
            let w = (0..<q.count).map { Float(q[$0]) * weightScales[$0 / g.depth] * channelScale[$0 / g.depth] }
            let expected = Reference.convolution(dequantised, weights: w, bias: bias, geometry: g, scale: 0.3,
                                                 residual: residual, activation: .relu)
            var outputs: [[Float]] = []
            for route in Self.int8Routes {
                let conv = ReducedConvolution(int8: g, weights: p, channelScale: channelScale, bias: bias, scale: 0.3,
                                              activation: .relu, kernels: route)
                let out = run(conv, input, c, threads: 2, residual: residual)
                #expect(relativeError(out, expected.scalars) < 1e-5, "\(route.int8Name) zero point \(zeroPoint)")
                outputs.append(out)
            }
            #expect(outputs.allSatisfy { $0 == outputs[0] }, "the int8 routes disagree")
        }
    }

    private func geometry(_ c: ConvolutionKernelTests.Case) -> ConvGeometry {
        ConvGeometry(inChannels: c.cin, outChannels: c.cout, kernel: (c.kh, c.kw), stride: (c.stride, c.stride),
                     padding: (c.ph, c.pw))
    }

    private func outputShape(_ c: ConvolutionKernelTests.Case) -> [Int] {
        let (oh, ow) = geometry(c).outputSize(h: c.h, w: c.w)
        return [oh, ow, c.cout]
    }

    private func roundedToBF16(_ x: Float) -> Float { ReducedReference.bf16(UInt32(ReducedReference.bf16Bits(x))) }

    /// The layer's output channels, written into a slice of a wider map whose other channels must stay untouched.
    private func run(_ conv: ReducedConvolution, _ input: Tensor, _ c: ConvolutionKernelTests.Case, threads: Int,
                     residual: Tensor? = nil) -> [Float] {
        var input = input
        let shape = outputShape(c)
        let wide = c.cout + 13
        var output = Tensor(shape: [c.n, shape[0], shape[1], wide],
                            scalars: [Float](repeating: 42, count: c.n * shape[0] * shape[1] * wide))
        var scratch = [Float](repeating: .nan, count: conv.scratchFloats(n: c.n, h: c.h, w: c.w))
        scratch.withUnsafeMutableBufferPointer { s in
            withMap(&input) { i in withMap(&output) { o in
                func run(_ r: FeatureMap?) {
                    conv.run(input: i, outputs: [o.channels(5, c.cout)], residual: r, scratch: s.baseAddress!,
                             threads: threads)
                }
                guard var residual else { return run(nil) }
                withMap(&residual) { run($0) }
            } }
        }
        let (slice, guards) = channelSlice(output, offset: 5, count: c.cout)
        #expect(guards.allSatisfy { $0 == 42 }, "wrote outside its channel slice")
        return slice
    }
}
