/// Plain reference implementations of every fast kernel: direct loops over NHWC `Tensor`s, accumulating in
/// Double, written for obviousness. Tests compare the fast kernels against these.

package enum Reference {
    /// activation(residual + scale · (conv(input, weights) + bias)); weights OIHW, input and output NHWC.
    package static func convolution(_ input: Tensor, weights: [Float], bias: [Float]?, geometry g: ConvGeometry,
                                   scale: Float = 1, residual: Tensor? = nil, activation: Activation) -> Tensor {
        let (n, h, w) = (input.shape[0], input.shape[1], input.shape[2])
        precondition(input.shape[3] == g.inChannels)
        let (oh, ow) = g.outputSize(h: h, w: w)
        var out = Tensor(zeros: [n, oh, ow, g.outChannels])
        for b in 0..<n { for oy in 0..<oh { for ox in 0..<ow { for o in 0..<g.outChannels {
            var s = Double(bias?[o] ?? 0)
            for ky in 0..<g.kernelH {
                let iy = oy * g.strideH - g.padH + ky
                if iy < 0 || iy >= h { continue }
                for kx in 0..<g.kernelW {
                    let ix = ox * g.strideW - g.padW + kx
                    if ix < 0 || ix >= w { continue }
                    for i in 0..<g.inChannels {
                        let wv = weights[((o * g.inChannels + i) * g.kernelH + ky) * g.kernelW + kx]
                        s += Double(wv) * Double(input.scalars[((b * h + iy) * w + ix) * g.inChannels + i])
                    }
                }
            }
            let index = ((b * oh + oy) * ow + ox) * g.outChannels + o
            s *= Double(scale)
            if let residual { s += Double(residual.scalars[index]) }
            if activation == .relu { s = max(0, s) }
            out.scalars[index] = Float(s)
        } } } }
        return out
    }

    /// `ceilMode`: PyTorch's formula, ⌈(size − kernel) / stride⌉ + 1 windows, less one that would start outside;
    /// windows past the edge take the pixels inside.
    package static func maxPool(_ input: Tensor, kernel: Int, stride: Int, ceilMode: Bool = false) -> Tensor {
        let (n, h, w, c) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        func windows(_ size: Int) -> Int {
            guard ceilMode else { return (size - kernel) / stride + 1 }
            let count = Int((Double(size - kernel) / Double(stride)).rounded(.up)) + 1
            return (count - 1) * stride >= size ? count - 1 : count
        }
        let (oh, ow) = (windows(h), windows(w))
        var out = Tensor(zeros: [n, oh, ow, c])
        for b in 0..<n { for oy in 0..<oh { for ox in 0..<ow { for ch in 0..<c {
            var m = -Float.infinity
            for ky in 0..<kernel where oy * stride + ky < h { for kx in 0..<kernel where ox * stride + kx < w {
                m = max(m, input.scalars[((b * h + oy * stride + ky) * w + ox * stride + kx) * c + ch])
            } }
            out.scalars[((b * oh + oy) * ow + ox) * c + ch] = m
        } } } }
        return out
    }

    /// Average pool whose divisor counts only the pixels inside the image.
    package static func averagePool(_ input: Tensor, kernel: Int, stride: Int, padding: Int) -> Tensor {
        let (n, h, w, c) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let (oh, ow) = ((h + 2 * padding - kernel) / stride + 1, (w + 2 * padding - kernel) / stride + 1)
        var out = Tensor(zeros: [n, oh, ow, c])
        for b in 0..<n { for oy in 0..<oh { for ox in 0..<ow { for ch in 0..<c {
            var s = 0.0, count = 0
            for ky in 0..<kernel { for kx in 0..<kernel {
                let (iy, ix) = (oy * stride - padding + ky, ox * stride - padding + kx)
                if iy >= 0 && iy < h && ix >= 0 && ix < w {
                    s += Double(input.scalars[((b * h + iy) * w + ix) * c + ch])
                    count += 1
                }
            } }
            out.scalars[((b * oh + oy) * ow + ox) * c + ch] = Float(s / Double(count))
        } } } }
        return out
    }

    package static func globalAveragePool(_ input: Tensor) -> Tensor {
        let (n, h, w, c) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        var out = Tensor(zeros: [n, 1, 1, c])
        for b in 0..<n { for ch in 0..<c {
            var s = 0.0
            for p in 0..<(h * w) { s += Double(input.scalars[(b * h * w + p) * c + ch]) }
            out.scalars[b * c + ch] = Float(s / Double(h * w))
        } }
        return out
    }
}
