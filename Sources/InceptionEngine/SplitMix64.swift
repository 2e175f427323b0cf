/// SplitMix64: a small, fast generator that gives the same numbers on every platform (random weights for
/// benchmarks, test data).
package struct SplitMix64: Sendable {
    package var state: UInt64

    package init(_ seed: UInt64) { state = seed }

    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [low, high), with 24 random bits.
    package mutating func uniform(_ low: Float = -1, _ high: Float = 1) -> Float {
        low + (high - low) * Float(next() >> 40) / Float(1 << 24)
    }
}
