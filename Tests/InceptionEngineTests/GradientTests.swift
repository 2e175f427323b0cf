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
                    for threads in [1, 2, 3] {
                        var c = c0
                        c.withUnsafeMutableBufferPointer {
                            GEMM.multiply(av, bv, into: $0.baseAddress!, ldc: n, accumulate: true, threads: threads)
                        }
                        #expect(relativeError(c, zip(expected, c0).map { $0 + $1 }) < 1e-5)
                        var fresh = c0
                        fresh.withUnsafeMutableBufferPointer {
                            GEMM.multiply(av, bv, into: $0.baseAddress!, ldc: n, accumulate: false, threads: threads)
                        }
                        #expect(relativeError(fresh, expected) < 1e-5)
                    }
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
        var rng = SeededRandom(UInt64(g.inChannels * 31 + g.outChannels * 7 + g.kernelH))
        var x = rng.tensor([2, 11, 9, g.inChannels])
        let w = rng.array(g.outChannels * g.depth)
        let (oh, ow) = g.outputSize(h: 11, w: 9)
        var dy = rng.tensor([2, oh, ow, g.outChannels])
        let expected = Reference.convolutionGradients(x, weights: w, geometry: g, outputGradient: dy)
        for threads in [1, 2] {
            // Gradients accumulate: start from non-zero buffers.
            let dx0 = rng.tensor(x.shape), dw0 = rng.array(w.count)
            var dx = dx0, dw = dw0
            withMap(&x) { xm in withMap(&dy) { dym in withMap(&dx) { dxm in
                ConvolutionGradient.data(outputGradient: dym, weights: w, geometry: g, inputGradient: dxm, threads: threads)
                dw.withUnsafeMutableBufferPointer {
                    ConvolutionGradient.weights(input: xm, outputGradient: dym, geometry: g, into: $0.baseAddress!, threads: threads)
                }
            } } }
            #expect(relativeError(zip(dx.scalars, dx0.scalars).map { $0 - $1 }, expected.input) < 1e-5, "\(g) dX")
            #expect(relativeError(zip(dw, dw0).map { $0 - $1 }, expected.weights) < 1e-5, "\(g) dW")
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
}
