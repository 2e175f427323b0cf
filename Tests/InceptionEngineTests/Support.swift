import InceptionEngine

/// A small deterministic generator (SplitMix64) so tests do not depend on the platform's random source.
struct SeededRandom {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform(_ low: Float = -1, _ high: Float = 1) -> Float {
        low + (high - low) * Float(next() >> 40) / Float(1 << 24)
    }
    mutating func array(_ count: Int, _ low: Float = -1, _ high: Float = 1) -> [Float] {
        (0..<count).map { _ in uniform(low, high) }
    }
    mutating func tensor(_ shape: [Int]) -> Tensor { Tensor(shape: shape, scalars: array(shape.reduce(1, *))) }
}

/// ‖a − b‖₂ / ‖b‖₂.
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count, "\(a.count) vs \(b.count) values")
    var num = 0.0, den = 0.0
    for i in a.indices {
        num += Double(a[i] - b[i]) * Double(a[i] - b[i])
        den += Double(b[i]) * Double(b[i])
    }
    return (num / max(den, 1e-30)).squareRoot()
}

/// Runs `body` with the tensor's storage as a packed feature map.
func withMap<R>(_ t: inout Tensor, _ body: (FeatureMap) -> R) -> R {
    let (n, h, w, c) = (t.shape[0], t.shape[1], t.shape[2], t.shape[3])
    return t.scalars.withUnsafeMutableBufferPointer { body(FeatureMap(base: $0.baseAddress!, n: n, h: h, w: w, c: c)) }
}

/// The values of channels `offset ..< offset + count` of an NHWC tensor, and all the others (the guards).
func channelSlice(_ t: Tensor, offset: Int, count: Int) -> (slice: [Float], guards: [Float]) {
    let wide = t.shape[3]
    var slice = [Float](), guards = [Float]()
    for (i, v) in t.scalars.enumerated() {
        let ch = i % wide
        if ch >= offset && ch < offset + count { slice.append(v) } else { guards.append(v) }
    }
    return (slice, guards)
}
