import Foundation
import Testing
import InceptionEngine

/// Every fast kernel against its plain reference, on shapes chosen to hit edges: odd sizes, channel counts
/// that are not multiples of 8 or 16, more rows than one tile, batch > 1, strides and every kernel shape.
struct ConvolutionKernelTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let n, h, w, cin, cout, kh, kw, stride, ph, pw: Int
        var testDescription: String { "n\(n) \(h)×\(w)×\(cin)→\(cout) k\(kh)×\(kw) s\(stride) p\(ph),\(pw)" }
    }

    static let cases: [Case] = [
        Case(n: 1, h: 7, w: 9, cin: 5, cout: 3, kh: 1, kw: 1, stride: 1, ph: 0, pw: 0),
        Case(n: 2, h: 11, w: 13, cin: 19, cout: 37, kh: 3, kw: 3, stride: 1, ph: 1, pw: 1),
        Case(n: 3, h: 15, w: 10, cin: 3, cout: 32, kh: 3, kw: 3, stride: 2, ph: 0, pw: 0),
        Case(n: 1, h: 9, w: 17, cin: 24, cout: 20, kh: 1, kw: 7, stride: 1, ph: 0, pw: 3),
        Case(n: 2, h: 17, w: 5, cin: 33, cout: 48, kh: 7, kw: 1, stride: 1, ph: 3, pw: 0),
        Case(n: 1, h: 8, w: 8, cin: 40, cout: 17, kh: 1, kw: 3, stride: 1, ph: 0, pw: 1),
        Case(n: 2, h: 6, w: 7, cin: 9, cout: 31, kh: 3, kw: 1, stride: 1, ph: 1, pw: 0),
        Case(n: 1, h: 12, w: 11, cin: 12, cout: 64, kh: 5, kw: 5, stride: 1, ph: 2, pw: 2),
        Case(n: 2, h: 13, w: 13, cin: 16, cout: 24, kh: 3, kw: 3, stride: 2, ph: 1, pw: 1),
        Case(n: 1, h: 1, w: 1, cin: 70, cout: 1001, kh: 1, kw: 1, stride: 1, ph: 0, pw: 0),
    ]

    /// At every instruction-set level this CPU supports (baseline, and AVX2 and AVX-512 where present).
    @Test(arguments: cases, [1, 2])
    func matchesReference(_ c: Case, threads: Int) {
        for kernels in Kernels.supported { matchesReference(c, threads: threads, kernels: kernels) }
    }

    func matchesReference(_ c: Case, threads: Int, kernels: KernelTable) {
        var rng = SeededRandom(UInt64(c.h * 131 + c.cin * 7 + c.cout))
        let g = ConvGeometry(inChannels: c.cin, outChannels: c.cout, kernel: (c.kh, c.kw), stride: (c.stride, c.stride),
                             padding: (c.ph, c.pw))
        var input = rng.tensor([c.n, c.h, c.w, c.cin])
        let weights = rng.array(g.outChannels * g.depth), bias = rng.array(c.cout)
        let (oh, ow) = g.outputSize(h: c.h, w: c.w)
        for (activation, withResidual) in [(Activation.identity, false), (.relu, false), (.relu, true)] {
            var residual = rng.tensor([c.n, oh, ow, c.cout])
            let scale: Float = withResidual ? 0.17 : 1
            let expected = Reference.convolution(input, weights: weights, bias: bias, geometry: g, scale: scale,
                                                 residual: withResidual ? residual : nil, activation: activation)
            // Write into a channel slice of a wider map, as concatenation does, with guards on both sides.
            let wide = c.cout + 13
            var output = Tensor(shape: [c.n, oh, ow, wide],
                                scalars: [Float](repeating: 42, count: c.n * oh * ow * wide))
            let packed = PackedConvolution(geometry: g, weights: weights, bias: bias, scale: scale,
                                           activation: activation)
            let zeros = [Float](repeating: 0, count: c.cin)
            zeros.withUnsafeBufferPointer { z in
                withMap(&input) { i in withMap(&output) { o in withMap(&residual) { r in
                    packed.run(input: i, output: o.channels(5, c.cout), residual: withResidual ? r : nil,
                               zeros: z.baseAddress!, threads: threads, kernels: kernels)
                } } }
            }
            let (slice, guards) = channelSlice(output, offset: 5, count: c.cout)
            #expect(relativeError(slice, expected.scalars) < 1e-6,
                    "\(kernels.name) \(activation) residual: \(withResidual)")
            #expect(guards.allSatisfy { $0 == 42 }, "wrote outside its channel slice")
        }
    }
}

/// The instruction-set levels: what the CPU reports, and `INCEPTION_ISA`'s answers.
struct KernelLevelTests {
    @Test func levelsAreDetectedAndForceable() {
        let names = Kernels.supported.map(\.name)
        #expect(names.last == "baseline" && Kernels.current.name == names[0]
                || ProcessInfo.processInfo.environment["INCEPTION_ISA"] != nil)
        #expect(Kernels.all.map(\.name) == ["avx512", "avx2", "baseline"])
        #expect(Kernels.select("baseline").table.name == "baseline" && Kernels.select("baseline").problem == nil)
        #expect(Kernels.select("sse9").problem == "INCEPTION_ISA=sse9 is not a level; use avx512, avx2, baseline")
        if !names.contains("avx512") {
            let problem = Kernels.select("avx512").problem
            #expect(problem?.hasPrefix("INCEPTION_ISA=avx512: this CPU cannot run avx512") == true)
        }
        // Where the CPU has AVX-512 (this project's machines may be AMD EPYC Zen 3 without it), it is used.
        if let flags = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8), flags.contains(" avx512bw "),
           flags.contains(" avx512vl "), flags.contains(" avx512dq "), flags.contains(" avx512cd ") {
            #expect(names.contains("avx512"))
        }
    }
}

struct PoolingKernelTests {
    @Test(arguments: [(1, 7, 7, 5), (2, 35, 35, 19), (3, 10, 13, 64), (1, 3, 3, 1)])
    func maxPoolMatchesReference(_ shape: (Int, Int, Int, Int)) {
        var rng = SeededRandom(7)
        var input = rng.tensor([shape.0, shape.1, shape.2, shape.3])
        let expected = Reference.maxPool(input, kernel: 3, stride: 2)
        var output = Tensor(zeros: expected.shape)
        withMap(&input) { i in
            withMap(&output) { o in
                Pooling.maxPool(input: i, output: o, kernel: 3, stride: 2, ceilMode: false, threads: 2)
            }
        }
        #expect(output == expected)
    }

    /// MTCNN's pools: PyTorch's ceil mode, a clipped last window on odd sizes (46 → 23 at 3/2, 9 → 4, 5 → 3 at 2/2).
    @Test(arguments: [(1, 46, 46, 32, 3), (2, 9, 9, 10, 3), (1, 5, 7, 16, 2), (1, 8, 3, 9, 2), (1, 22, 21, 28, 3)])
    func ceilModeMaxPoolMatchesReference(_ shape: (Int, Int, Int, Int, Int)) {
        var rng = SeededRandom(11)
        var input = rng.tensor([shape.0, shape.1, shape.2, shape.3])
        let kernel = shape.4
        let expected = Reference.maxPool(input, kernel: kernel, stride: 2, ceilMode: true)
        #expect(expected.shape[1] == Pooling.maxPoolOutputSize(shape.1, kernel: kernel, stride: 2, ceilMode: true))
        var output = Tensor(zeros: expected.shape)
        withMap(&input) { i in
            withMap(&output) { o in
                Pooling.maxPool(input: i, output: o, kernel: kernel, stride: 2, ceilMode: true, threads: 2)
            }
        }
        #expect(output == expected)
    }

    @Test(arguments: [(1, 7, 7, 5), (2, 8, 9, 19), (3, 1, 4, 13), (1, 17, 17, 64)])
    func averagePoolExcludesPadding(_ shape: (Int, Int, Int, Int)) {
        var rng = SeededRandom(11)
        var input = rng.tensor([shape.0, shape.1, shape.2, shape.3])
        let expected = Reference.averagePool(input, kernel: 3, stride: 1, padding: 1)
        var output = Tensor(zeros: expected.shape)
        withMap(&input) { i in
            withMap(&output) { o in
                Pooling.averagePool(input: i, output: o, kernel: 3, stride: 1, padding: 1, threads: 2)
            }
        }
        #expect(relativeError(output.scalars, expected.scalars) < 1e-6)
        // A corner pixel averages only the 4 pixels inside the image (count_include_pad=False).
        let c = shape.3
        if shape.1 > 1 && shape.2 > 1 {
            let corner = (input.scalars[0] + input.scalars[c] + input.scalars[shape.2 * c]
                          + input.scalars[(shape.2 + 1) * c]) / 4
            #expect(abs(output.scalars[0] - corner) < 1e-5)
        }
    }

    @Test func globalAveragePoolMatchesReference() {
        var rng = SeededRandom(3)
        var input = rng.tensor([2, 5, 3, 21])
        let expected = Reference.globalAveragePool(input)
        var output = Tensor(zeros: expected.shape)
        withMap(&input) { i in withMap(&output) { o in Pooling.globalAveragePool(input: i, output: o, threads: 2) } }
        #expect(relativeError(output.scalars, expected.scalars) < 1e-6)
    }
}
