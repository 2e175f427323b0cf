/// The reduced-precision micro-kernels' naive references, in Swift: the contract of the C micro-kernels in
/// `CInceptionReduced` (see its header), written as plain loops. The tests hold each C kernel to its reference — the
/// int8 ones bitwise (integer sums are exact), bf16 within float rounding — and a CPU without AVX2 runs int8 on
/// `int8QuadsMicroKernelReference`.
///
/// A call covers 6 rows × `panels` panels of 16 output channels over `taps` × `words` 32-bit words of depth;
/// `a[tap · 6 + r]` points at row r's words for that tap; panel q's weights start at word `q · panelWords · 16`,
/// 16 words (one per output channel) per depth word. `sums[(q · 6 + r) · 16 + lane]` receives the sum as a float.
public typealias ReducedMicroKernel = @Sendable (_ a: UnsafePointer<UnsafePointer<UInt32>>, _ taps: Int, _ words: Int,
                                _ weights: UnsafePointer<UInt32>, _ panelWords: Int, _ panels: Int,
                                _ sums: UnsafeMutablePointer<Float>) -> Void

public enum ReducedReference {
    /// bf16 pairs: each word holds two bfloat16 values (low half first in depth order); products summed in Double.
    public static func bf16MicroKernel(_ a: UnsafePointer<UnsafePointer<UInt32>>, _ taps: Int, _ words: Int,
                                _ weights: UnsafePointer<UInt32>, _ panelWords: Int, _ panels: Int,
                                _ sums: UnsafeMutablePointer<Float>) {
        tile(a, taps, words, weights, panelWords, panels, sums) { x, w in
            Double(bf16(x & 0xFFFF)) * Double(bf16(w & 0xFFFF)) + Double(bf16(x >> 16)) * Double(bf16(w >> 16))
        }
    }

    /// int8 quads: four u8 activations × four s8 weights per word, summed exactly (VPDPBUSD).
    public static func int8QuadsMicroKernel(_ a: UnsafePointer<UnsafePointer<UInt32>>, _ taps: Int, _ words: Int,
                                     _ weights: UnsafePointer<UInt32>, _ panelWords: Int, _ panels: Int,
                                     _ sums: UnsafeMutablePointer<Float>) {
        tile(a, taps, words, weights, panelWords, panels, sums) { x, w in
            var s = 0
            for j in 0..<4 {
                let shift = UInt32(8 * j)
                s += Int(UInt8(truncatingIfNeeded: x >> shift)) * Int(Int8(truncatingIfNeeded: w >> shift))
            }
            return Double(s)
        }
    }

    /// int8 pairs: two activations and two weights per word as 16-bit integers (u8 and s8 widened), summed exactly
    /// (VPMADDWD).
    public static func int8PairsMicroKernel(_ a: UnsafePointer<UnsafePointer<UInt32>>, _ taps: Int, _ words: Int,
                                     _ weights: UnsafePointer<UInt32>, _ panelWords: Int, _ panels: Int,
                                     _ sums: UnsafeMutablePointer<Float>) {
        tile(a, taps, words, weights, panelWords, panels, sums) { x, w in
            let low = Int(Int16(truncatingIfNeeded: x)) * Int(Int16(truncatingIfNeeded: w))
            return Double(low + Int(Int16(truncatingIfNeeded: x >> 16)) * Int(Int16(truncatingIfNeeded: w >> 16)))
        }
    }

    /// The float a bfloat16 stands for (its bits are a float's upper half).
    @inlinable
    public static func bf16(_ bits: UInt32) -> Float { Float(bitPattern: bits << 16) }

    /// A float rounded to bfloat16, to nearest with ties to even (finite values; what VCVTNEPS2BF16 does).
    @inlinable
    public static func bf16Bits(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        return UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
    }

    private static func tile(_ a: UnsafePointer<UnsafePointer<UInt32>>, _ taps: Int, _ words: Int,
                             _ weights: UnsafePointer<UInt32>, _ panelWords: Int, _ panels: Int,
                             _ sums: UnsafeMutablePointer<Float>, _ dot: (UInt32, UInt32) -> Double) {
        for q in 0..<panels {
            for r in 0..<6 {
                for lane in 0..<16 {
                    var s = 0.0
                    var w = weights + q * panelWords * 16 + lane
                    for tap in 0..<taps {
                        let row = a[tap * 6 + r]
                        for i in 0..<words {
                            s += dot(row[i], w.pointee)
                            w += 16
                        }
                    }
                    sums[(q * 6 + r) * 16 + lane] = Float(s)
                }
            }
        }
    }
}
