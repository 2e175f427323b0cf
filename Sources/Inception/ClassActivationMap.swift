import Foundation

/// How a class activation map weighs a layer's activations — pytorch-grad-cam's methods, with its definitions.
/// A is the layer's activations (channel k, pixel p), G = ∂target/∂A.
public enum CAMMethod: String, CaseIterable, Sendable, Codable {
    /// Σₖ mean_p(Gₖ) · Aₖ (Selvaraju et al. 2017).
    case gradCAM = "gradcam"
    /// Σₖ (Σ_p relu(Gₖₚ) · αₖₚ) · Aₖ, αₖₚ = Gₖₚ² / (2 Gₖₚ² + Σ_q Aₖ_q · Gₖₚ³) (Chattopadhyay et al. 2018).
    case gradCAMPlusPlus = "gradcam++"
    /// Σₖ (Σ_p Gₖₚ Aₖₚ / Σ_p Aₖₚ) · Aₖ (Fu et al. 2020).
    case xGradCAM = "xgradcam"
    /// Σₖ Gₖ ⊙ Aₖ (Draelos and Carin 2020).
    case hiResCAM = "hirescam"
    /// Σₖ relu(Gₖ) ⊙ Aₖ (Jiang et al. 2021).
    case layerCAM = "layercam"
    /// The activations' first principal component, no gradient (Muhammad and Yeasin 2020).
    case eigenCAM = "eigencam"

    /// Whether the method reads gradients (all but EigenCAM).
    public var usesGradients: Bool { self != .eigenCAM }
}

/// The arithmetic of class activation maps, on one image's activations and gradients (`pixels × channels`, the
/// engine's NHWC order), as pytorch-grad-cam 1.5.7 computes it: the method's map, its ReLU, scaled to [0, 1],
/// resized to the network input as OpenCV's `resize` (bilinear, half-pixel centres), and scaled again.
enum ClassActivationMap {
    /// pytorch-grad-cam's `scale_cam_image`'s guard against a constant map.
    static let scaleEpsilon = 1e-7

    /// The method's map at the layer's resolution, before its ReLU: one value per pixel.
    static func raw(_ method: CAMMethod, activations a: [Float], gradients g: [Float], pixels: Int,
                    channels: Int) -> [Double] {
        func at(_ p: Int, _ k: Int) -> (a: Double, g: Double) {
            (Double(a[p * channels + k]), Double(g[p * channels + k]))
        }
        func weighted(_ weights: [Double]) -> [Double] {
            (0..<pixels).map { p in (0..<channels).reduce(0.0) { $0 + weights[$1] * at(p, $1).a } }
        }
        func perPixel(_ term: (Double, Double) -> Double) -> [Double] {
            (0..<pixels).map { p in
                (0..<channels).reduce(0.0) { sum, k in
                    let v = at(p, k)
                    return sum + term(v.a, v.g)
                }
            }
        }
        func activationSums() -> [Double] { (0..<channels).map { k in (0..<pixels).reduce(0.0) { $0 + at($1, k).a } } }
        switch method {
        case .gradCAM:
            return weighted((0..<channels).map { k in (0..<pixels).reduce(0.0) { $0 + at($1, k).g } / Double(pixels) })
        case .gradCAMPlusPlus:
            let sums = activationSums()
            return weighted((0..<channels).map { k in
                (0..<pixels).reduce(0.0) { total, p in
                    let g = at(p, k).g
                    guard g != 0 else { return total }
                    let alpha = g * g / (2 * g * g + sums[k] * g * g * g + 1e-6)
                    return total + max(g, 0) * alpha
                }
            })
        case .xGradCAM:
            let sums = activationSums()
            return weighted((0..<channels).map { k in
                (0..<pixels).reduce(0.0) { $0 + at($1, k).g * at($1, k).a } / (sums[k] + 1e-7)
            })
        case .hiResCAM:
            return perPixel { a, g in g * a }
        case .layerCAM:
            return perPixel { a, g in max(g, 0) * a }
        case .eigenCAM:
            return firstComponent(a, pixels: pixels, channels: channels)
        }
    }

    /// The projection of the centred activations on their first principal component (pytorch-grad-cam's
    /// `get_2d_projection`: `X_c · v₁` with v₁ the first right singular vector of the centred `pixels × channels`
    /// matrix), found by power iteration on the smaller Gram matrix. A singular vector's sign is arbitrary (LAPACK
    /// picks one by its own arithmetic); this one is chosen so that the map's largest magnitude is positive,
    /// pytorch-grad-cam's own sign correction (`get_2d_projection_with_sign_correction`).
    static func firstComponent(_ a: [Float], pixels: Int, channels: Int) -> [Double] {
        var x = a.map { $0.isNaN ? 0 : Double($0) }
        for k in 0..<channels {
            let mean = (0..<pixels).reduce(0.0) { $0 + x[$1 * channels + k] } / Double(pixels)
            for p in 0..<pixels { x[p * channels + k] -= mean }
        }
        let byPixel = pixels <= channels
        let n = byPixel ? pixels : channels
        // Gram matrix: X Xᵀ (pixels²) or Xᵀ X (channels²).
        var gram = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in i..<n {
            var s = 0.0
            if byPixel {
                for k in 0..<channels { s += x[i * channels + k] * x[j * channels + k] }
            } else {
                for p in 0..<pixels { s += x[p * channels + i] * x[p * channels + j] }
            }
            (gram[i * n + j], gram[j * n + i]) = (s, s)
        } }
        let (vector, value) = topEigenvector(gram, n: n)
        var projection: [Double]
        if byPixel {
            projection = vector.map { $0 * value.squareRoot() }  // X v₁ = σ₁ u₁
        } else {
            projection = (0..<pixels).map { p in (0..<channels).reduce(0.0) { $0 + x[p * channels + $1] * vector[$1] } }
        }
        if abs(projection.min() ?? 0) > abs(projection.max() ?? 0) { projection = projection.map { -$0 } }
        return projection
    }

    /// The unit eigenvector of a symmetric positive semi-definite matrix's largest eigenvalue, and that eigenvalue.
    static func topEigenvector(_ m: [Double], n: Int) -> ([Double], Double) {
        var v = (0..<n).map { 1 + Double($0 % 7) / 10 }
        var value = 0.0
        for _ in 0..<20_000 {
            var next = (0..<n).map { i in (0..<n).reduce(0.0) { $0 + m[i * n + $1] * v[$1] } }
            let norm = next.reduce(0) { $0 + $1 * $1 }.squareRoot()
            guard norm > 0 else { return (v, 0) }
            next = next.map { $0 / norm }
            let change = zip(next, v).reduce(0.0) { max($0, abs($1.0 - $1.1)) }
            (v, value) = (next, norm)
            if change < 1e-13 { break }
        }
        return (v, value)
    }

    /// pytorch-grad-cam's `scale_cam_image` without its resize: x − min, divided by (1e-7 + max of that).
    static func scaled(_ map: [Double]) -> [Double] {
        guard let low = map.min() else { return map }
        let shifted = map.map { $0 - low }
        let top = shifted.max()! + scaleEpsilon
        return shifted.map { $0 / top }
    }

    /// OpenCV's `resize(…, INTER_LINEAR)` of a float map: each output pixel's centre mapped back
    /// (`(d + 0.5) · in/out − 0.5`), the two nearest inputs blended, clamped to the edges.
    static func resized(_ map: [Double], height: Int, width: Int, toHeight: Int, toWidth: Int) -> [Double] {
        let xs = taps(from: width, to: toWidth), ys = taps(from: height, to: toHeight)
        let rows = (0..<height).map { y in
            xs.map { t in map[y * width + t.index] * t.weights.0 + map[y * width + t.next] * t.weights.1 }
        }
        return ys.flatMap { t in
            (0..<toWidth).map { x in rows[t.index][x] * t.weights.0 + rows[t.next][x] * t.weights.1 }
        }
    }

    /// For each output position: the first input, the second, and their weights (OpenCV's, in Float).
    static func taps(from size: Int, to target: Int) -> [(index: Int, next: Int, weights: (Double, Double))] {
        let scale = 1 / (Double(target) / Double(size))
        return (0..<target).map { d in
            let f = Float((Double(d) + 0.5) * scale - 0.5)
            var s = Int(f.rounded(.down)), fraction = f - Float(s)
            if s < 0 { (s, fraction) = (0, 0) }
            if s >= size - 1 { (s, fraction) = (size - 1, 0) }
            return (s, min(s + 1, size - 1), (Double(1 - fraction), Double(fraction)))
        }
    }

    /// The whole map of one image: the method's, its ReLU, scaled; then at the input's size, scaled again (as
    /// pytorch-grad-cam's `aggregate_multi_layers` does for one layer). Returns both, in [0, 1].
    static func maps(_ method: CAMMethod, activations: [Float], gradients: [Float], height: Int, width: Int,
                     channels: Int, inputHeight: Int, inputWidth: Int) -> (layer: [Float], input: [Float]) {
        let raw = raw(method, activations: activations, gradients: gradients, pixels: height * width,
                      channels: channels)
        let layer = scaled(raw.map { max($0, 0) })
        let input = scaled(resized(layer, height: height, width: width, toHeight: inputHeight, toWidth: inputWidth)
            .map { max($0, 0) })
        return (layer.map(Float.init), input.map(Float.init))
    }
}
