import InceptionEngine
import Testing

/// The training kernels against their plain Double references.
@Suite struct GradientTests {
    @Test(arguments: [(1, 1, 1), (7, 5, 3), (13, 37, 300), (72, 16, 256), (100, 33, 513)])
    func gemmMatchesThreeLoopsForEveryLayout(_ shape: (Int, Int, Int)) {
        let (m, n, k) = shape
        var rng = SeededRandom(UInt64(m * 1000 + n * 10 + k))
        let a = rng.array(m * k), b = rng.array(k * n), c0 = rng.array(m * n)
        a.withUnsafeBufferPointer { a in
        b.withUnsafeBufferPointer { b in
            // A row-major and transposed (stored k × m); B likewise.
            let aViews = [MatrixView(rowMajor: a.baseAddress!, rows: m, columns: k),
                          MatrixView(rowMajor: a.baseAddress!, rows: k, columns: m).transposed]
            let bViews = [MatrixView(rowMajor: b.baseAddress!, rows: k, columns: n),
                          MatrixView(rowMajor: b.baseAddress!, rows: n, columns: k).transposed]
            for av in aViews {
                for bv in bViews {
                    let expected = GEMM.reference(av, bv)
                    // At every instruction-set level this CPU supports.
                    for threads in [1, 2, 3] { for kernels in Kernels.supported {
                        var c = c0
                        c.withUnsafeMutableBufferPointer {
                            GEMM.multiply(av, bv, into: $0.baseAddress!, ldc: n, accumulate: true, threads: threads,
                                          kernels: kernels)
                        }
                        #expect(relativeError(c, zip(expected, c0).map { $0 + $1 }) < 1e-5)
                        var fresh = c0
                        fresh.withUnsafeMutableBufferPointer {
                            GEMM.multiply(av, bv, into: $0.baseAddress!, ldc: n, accumulate: false, threads: threads,
                                          kernels: kernels)
                        }
                        #expect(relativeError(fresh, expected) < 1e-5, "\(kernels.name)")
                    } }
                }
            }
        }
        }
    }

    static let geometries: [ConvGeometry] = [
        ConvGeometry(inChannels: 5, outChannels: 7, kernel: (1, 1)),
        ConvGeometry(inChannels: 6, outChannels: 20, kernel: (3, 3), padding: (1, 1)),
        ConvGeometry(inChannels: 4, outChannels: 9, kernel: (3, 3)),
        ConvGeometry(inChannels: 8, outChannels: 17, kernel: (3, 3), stride: (2, 2)),
        ConvGeometry(inChannels: 3, outChannels: 16, kernel: (3, 3), stride: (2, 2), padding: (1, 1)),
        ConvGeometry(inChannels: 7, outChannels: 12, kernel: (1, 7), padding: (0, 3)),
        ConvGeometry(inChannels: 12, outChannels: 7, kernel: (7, 1), padding: (3, 0)),
        ConvGeometry(inChannels: 10, outChannels: 11, kernel: (1, 3), padding: (0, 1)),
        ConvGeometry(inChannels: 6, outChannels: 5, kernel: (5, 5), padding: (2, 2)),
    ]

    @Test(arguments: geometries)
    func convolutionGradientsMatchTheReference(_ g: ConvGeometry) {
        checkConvolutionGradients(g, h: 11, w: 9)
    }

    /// More output pixels than one depth block of the GEMM (256), so the weight gradient's im2col is packed block
    /// by block, the last one partial; 20 input channels put two taps into one 16-column panel.
    @Test(arguments: [ConvGeometry(inChannels: 20, outChannels: 13, kernel: (3, 3), padding: (1, 1)),
                      ConvGeometry(inChannels: 20, outChannels: 8, kernel: (3, 3), stride: (2, 2)),
                      ConvGeometry(inChannels: 9, outChannels: 24, kernel: (1, 1))])
    func weightGradientSpansSeveralBlocksOfRows(_ g: ConvGeometry) {
        checkConvolutionGradients(g, h: 29, w: 23)
    }

    func checkConvolutionGradients(_ g: ConvGeometry, h: Int, w width: Int) {
        var rng = SeededRandom(UInt64(g.inChannels * 31 + g.outChannels * 7 + g.kernelH))
        var x = rng.tensor([2, h, width, g.inChannels])
        let w = rng.array(g.outChannels * g.depth)
        let (oh, ow) = g.outputSize(h: h, w: width)
        var dy = rng.tensor([2, oh, ow, g.outChannels])
        let expected = Reference.convolutionGradients(x, weights: w, geometry: g, outputGradient: dy)
        for threads in [1, 2] {
            // Gradients accumulate: start from non-zero buffers.
            let dx0 = rng.tensor(x.shape), dw0 = rng.array(w.count)
            var dx = dx0, dw = dw0
            withMap(&x) { xm in withMap(&dy) { dym in withMap(&dx) { dxm in
                ConvolutionGradient.data(outputGradient: dym, weights: w, geometry: g, inputGradient: dxm,
                                         threads: threads)
                dw.withUnsafeMutableBufferPointer {
                    ConvolutionGradient.weights(input: xm, outputGradient: dym, geometry: g, into: $0.baseAddress!,
                                                threads: threads)
                }
            } } }
            #expect(relativeError(zip(dx.scalars, dx0.scalars).map { $0 - $1 }, expected.input) < 1e-5, "\(g) dX")
            #expect(relativeError(zip(dw, dw0).map { $0 - $1 }, expected.weights) < 1e-5, "\(g) dW")
            // The first gradient a map receives overwrites whatever its buffer held.
            var overwritten = Tensor(shape: x.shape, scalars: [Float](repeating: .nan, count: x.count))
            withMap(&dy) { dym in withMap(&overwritten) { dxm in
                ConvolutionGradient.data(outputGradient: dym, weights: w, geometry: g, inputGradient: dxm,
                                         accumulate: false, threads: threads)
            } }
            #expect(relativeError(overwritten.scalars, expected.input) < 1e-5, "\(g) dX overwritten")
        }
    }

    /// The reference gradient itself against central differences of the reference convolution, in Double.
    @Test func referenceConvolutionGradientIsTheDerivative() {
        let g = ConvGeometry(inChannels: 3, outChannels: 4, kernel: (3, 3), stride: (2, 2), padding: (1, 1))
        var rng = SeededRandom(3)
        let x = rng.tensor([1, 5, 6, 3]), w = rng.array(4 * g.depth)
        let (oh, ow) = g.outputSize(h: 5, w: 6)
        let r = rng.tensor([1, oh, ow, 4])
        let (dx, dw) = Reference.convolutionGradients(x, weights: w, geometry: g, outputGradient: r)
        // L(x, w) = Σ r · conv(x, w) is bilinear, so a central difference is exact up to rounding.
        func loss(_ x: Tensor, _ w: [Float]) -> Double {
            let y = Reference.convolution(x, weights: w, bias: nil, geometry: g, activation: .identity)
            return zip(y.scalars, r.scalars).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        for i in stride(from: 0, to: w.count, by: 7) {
            var (p, m) = (w, w)
            p[i] += 0.5; m[i] -= 0.5
            #expect(abs((loss(x, p) - loss(x, m)) - Double(dw[i])) < 1e-4)
        }
        for i in stride(from: 0, to: x.count, by: 5) {
            var (p, m) = (x, x)
            p.scalars[i] += 0.5; m.scalars[i] -= 0.5
            #expect(abs((loss(p, w) - loss(m, w)) - Double(dx[i])) < 1e-4)
        }
    }

    /// The ReLU backward zeroes dY exactly where the output is ≤ 0 (NaN outputs keep it), for counts that are not
    /// multiples of its vector width or block, on any thread count.
    @Test(arguments: [1, 2, 3])
    func reluMaskZeroesWhereTheOutputIsNotPositive(_ threads: Int) {
        let count = 2 * 4096 + 13
        var rng = SplitMix64(5)
        var output = (0..<count).map { _ in rng.uniform(-1, 1) }
        output[7] = .nan; output[8] = -0.0; output[9] = 0
        let dy = (0..<count).map { _ in rng.uniform(-1, 1) }
        let expected = (0..<count).map { output[$0] <= 0 ? 0 : dy[$0] }
        var masked = dy
        masked.withUnsafeMutableBufferPointer { d in
            output.withUnsafeBufferPointer { ReLU.mask(d.baseAddress!, output: $0.baseAddress!, count: count,
                                                       threads: threads) }
        }
        #expect(masked == expected)
    }

    /// Pooling backward against plain loops written here: max pooling sends each output's gradient to its window's
    /// first maximum, average pooling spreads it over the window's pixels inside the image. 40 channels, so both the
    /// 16-channel vector path and the scalar tail run; ties are planted to check "first".
    @Test(arguments: [(3, 2, 0), (3, 1, 1)])
    func poolingGradientsMatchPlainLoops(_ kernel: Int, _ step: Int, _ padding: Int) {
        var rng = SeededRandom(UInt64(kernel * 10 + step))
        let (n, h, w, c) = (2, 9, 8, 40)
        var x = rng.tensor([n, h, w, c])
        for i in stride(from: 0, to: x.count - 2 * c, by: 7) { x.scalars[i + c] = x.scalars[i] }  // equal neighbours
        let (oh, ow) = ((h + 2 * padding - kernel) / step + 1, (w + 2 * padding - kernel) / step + 1)
        var dy = rng.tensor([n, oh, ow, c])
        let index = { (b: Int, y: Int, x: Int, ch: Int) in ((b * h + y) * w + x) * c + ch }
        var maxExpected = [Float](repeating: 0.5, count: x.count), averageExpected = maxExpected
        for b in 0..<n { for oy in 0..<oh { for ox in 0..<ow { for ch in 0..<c {
            let d = dy.scalars[((b * oh + oy) * ow + ox) * c + ch]
            if padding == 0 {
                var best = -Float.infinity, at = 0
                for ky in 0..<kernel { for kx in 0..<kernel {
                    let i = index(b, oy * step + ky, ox * step + kx, ch)
                    if x.scalars[i] > best { (best, at) = (x.scalars[i], i) }
                } }
                maxExpected[at] += d
            }
            let ys = max(0, oy * step - padding)..<min(h, oy * step - padding + kernel)
            let xs = max(0, ox * step - padding)..<min(w, ox * step - padding + kernel)
            for iy in ys { for ix in xs { averageExpected[index(b, iy, ix, ch)] += d
                                         * (1 / Float(ys.count * xs.count)) } }
        } } } }
        for threads in [1, 2] {
            var maxGradient = Tensor(shape: x.shape, scalars: [Float](repeating: 0.5, count: x.count)),
                averageGradient = maxGradient
            withMap(&x) { xm in withMap(&dy) { dym in
                if padding == 0 {
                    withMap(&maxGradient) {
                        PoolingGradient.maxPool(input: xm, outputGradient: dym, inputGradient: $0, kernel: kernel,
                                                stride: step, threads: threads)
                    }
                }
                withMap(&averageGradient) {
                    PoolingGradient.averagePool(outputGradient: dym, inputGradient: $0, kernel: kernel, stride: step,
                                                padding: padding, threads: threads)
                }
            } }
            if padding == 0 { #expect(maxGradient.scalars == maxExpected) }
            #expect(averageGradient.scalars == averageExpected)
        }
    }
}
