import InceptionKernels

/// x86-64-v4: AVX-512 F/BW/CD/DQ/VL (Skylake-SP, Ice Lake, Sapphire Rapids, Zen 4 and later). Compiled with
/// `-target-cpu skylake-avx512` (x86-64-v4 plus tuning); 32 zmm registers hold a 12-row tile of 16-channel panels.
enum AVX512: KernelLevel {
    typealias Chunk = SIMD16<Float>
    static var fused: Bool { true }
    static var tileRows: Int { 12 }
    @inline(__always) static func relu(_ v: SIMD16<Float>) -> SIMD16<Float> { v.replacing(with: 0, where: v .< 0) }
    static var name: String { "avx512" }
}

public let avx512Kernels = KernelTable(AVX512.self)
