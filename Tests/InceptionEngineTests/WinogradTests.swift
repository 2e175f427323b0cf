import InceptionEngine
import Testing

struct WinogradTests {
    /// Aᵀ[(G g) ⊙ (Bᵀ d)] is the correlation of d with g, exactly (up to Double rounding), for every transform.
    @Test(arguments: [WinogradTransform.f2x3, .f4x3, .f6x3, .f4x7, .identity])
    func transformComputesCorrelation(_ t: WinogradTransform) {
        var rng = SeededRandom(UInt64(t.m * 10 + t.r))
        let d = (0..<t.alpha).map { _ in Double(rng.uniform()) }, g = (0..<t.r).map { _ in Double(rng.uniform()) }
        let y = t.apply(d, g)
        for i in 0..<t.m {
            let expected = (0..<t.r).reduce(0.0) { $0 + g[$1] * d[i + $1] }
            #expect(abs(y[i] - expected) < 1e-12, "F(\(t.m), \(t.r)) output \(i): \(y[i]) vs \(expected)")
        }
    }

    struct Case: CustomTestStringConvertible, Sendable {
        let n, h, w, cin, cout, kh, kw, ph, pw: Int
        var testDescription: String { "n\(n) \(h)×\(w)×\(cin)→\(cout) k\(kh)×\(kw) p\(ph),\(pw)" }
    }

    static let cases: [Case] = [
        Case(n: 1, h: 35, w: 35, cin: 64, cout: 96, kh: 3, kw: 3, ph: 1, pw: 1),
        Case(n: 2, h: 9, w: 13, cin: 19, cout: 37, kh: 3, kw: 3, ph: 1, pw: 1),
        Case(n: 1, h: 17, w: 17, cin: 256, cout: 288, kh: 3, kw: 3, ph: 1, pw: 1),
        Case(n: 1, h: 10, w: 11, cin: 24, cout: 20, kh: 3, kw: 3, ph: 0, pw: 0),
        Case(n: 1, h: 17, w: 17, cin: 192, cout: 224, kh: 1, kw: 7, ph: 0, pw: 3),
        Case(n: 2, h: 17, w: 5, cin: 33, cout: 48, kh: 7, kw: 1, ph: 3, pw: 0),
        Case(n: 1, h: 8, w: 8, cin: 40, cout: 17, kh: 1, kw: 3, ph: 0, pw: 1),
        Case(n: 3, h: 6, w: 7, cin: 9, cout: 31, kh: 3, kw: 1, ph: 1, pw: 0),
        Case(n: 1, h: 73, w: 73, cin: 64, cout: 64, kh: 7, kw: 1, ph: 3, pw: 0),
    ]

    /// At every instruction-set level this CPU supports.
    @Test(arguments: cases, [1, 2])
    func matchesReference(_ c: Case, threads: Int) throws {
        for kernels in Kernels.supported { try matchesReference(c, threads: threads, kernels: kernels) }
    }

    func matchesReference(_ c: Case, threads: Int, kernels: KernelTable) throws {
        var rng = SeededRandom(UInt64(c.h * 31 + c.cin * 5 + c.kh))
        let g = ConvGeometry(inChannels: c.cin, outChannels: c.cout, kernel: (c.kh, c.kw), padding: (c.ph, c.pw))
        var input = rng.tensor([c.n, c.h, c.w, c.cin])
        let weights = rng.array(c.cout * g.depth).map { $0 / Float(g.depth).squareRoot() }, bias = rng.array(c.cout)
        let (oh, ow) = g.outputSize(h: c.h, w: c.w)
        for (activation, withResidual) in [(Activation.identity, false), (.relu, true)] {
            var residual = rng.tensor([c.n, oh, ow, c.cout])
            let scale: Float = withResidual ? 0.2 : 1
            let expected = Reference.convolution(input, weights: weights, bias: bias, geometry: g, scale: scale,
                                                 residual: withResidual ? residual : nil, activation: activation)
            // Built for this output size, so each axis gets the transform a network's layer of that size gets.
            let conv = try #require(WinogradConvolution(geometry: g, weights: weights, bias: bias, scale: scale,
                                                        activation: activation, outputSize: (oh, ow)))
            let wide = c.cout + 5
            var output = Tensor(shape: [c.n, oh, ow, wide],
                                scalars: [Float](repeating: 42, count: c.n * oh * ow * wide))
            var scratch = [Float](repeating: .nan, count: conv.scratchFloats(n: c.n, h: c.h, w: c.w))
            scratch.withUnsafeMutableBufferPointer { s in
                withMap(&input) { i in withMap(&output) { o in withMap(&residual) { r in
                    conv.run(input: i, output: o.channels(2, c.cout), residual: withResidual ? r : nil,
                             scratch: s.baseAddress!, threads: threads, kernels: kernels)
                } } }
            }
            let (slice, guards) = channelSlice(output, offset: 2, count: c.cout)
            // F(6×6, 3×3) rounds about twice as much as the smaller transforms: 2.8e-6 measured at 256 channels.
            let tolerance = conv.vertical.m * conv.horizontal.m == 36 ? 4e-6 : 2e-6
            #expect(relativeError(slice, expected.scalars) < tolerance,
                    "\(kernels.name) \(activation) residual \(withResidual)")
            #expect(guards.allSatisfy { $0 == 42 }, "wrote outside its channel slice")
        }
    }

    /// F(6, 3) where it covers the side with fewer transform points than F(4, 3), F(4, 3) on ties and unknown sides.
    @Test func threeTapTransformFollowsTheSide() {
        #expect(WinogradTransform.forTaps(3, side: 35) == .f6x3)
        #expect(WinogradTransform.forTaps(3, side: 17) == .f6x3)
        #expect(WinogradTransform.forTaps(3, side: 8) == .f4x3)   // 2 · 6 points against 2 · 8
        #expect(WinogradTransform.forTaps(3, side: 16) == .f4x3)  // 4 · 6 = 3 · 8
        #expect(WinogradTransform.forTaps(3) == .f4x3)
        #expect(WinogradTransform.forTaps(7, side: 17) == .f4x7)
    }

    @Test func stridedAndUnsupportedKernelsAreDeclined() {
        let strided = ConvGeometry(inChannels: 4, outChannels: 4, kernel: (3, 3), stride: (2, 2))
        #expect(WinogradConvolution(geometry: strided, weights: [Float](repeating: 0, count: 144), bias: nil,
                                    activation: .relu) == nil)
        let fiveByFive = ConvGeometry(inChannels: 1, outChannels: 1, kernel: (5, 5))
        #expect(WinogradConvolution(geometry: fiveByFive, weights: [Float](repeating: 0, count: 25), bias: nil,
                                    activation: .relu) == nil)
        let pointwise = ConvGeometry(inChannels: 1, outChannels: 1, kernel: (1, 1))
        #expect(WinogradConvolution(geometry: pointwise, weights: [0], bias: nil, activation: .relu) == nil)
    }
}
