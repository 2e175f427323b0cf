import InceptionEngine
@_exported import InceptionTestSupport

/// Test data from the engine's platform-independent generator.
typealias SeededRandom = SplitMix64

extension SplitMix64 {
    mutating func array(_ count: Int, _ low: Float = -1, _ high: Float = 1) -> [Float] {
        (0..<count).map { _ in uniform(low, high) }
    }
    mutating func tensor(_ shape: [Int]) -> Tensor { Tensor(shape: shape, scalars: array(shape.reduce(1, *))) }
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
