import InceptionKernels

/// x86-64-v4: AVX-512 F/BW/CD/DQ/VL (Skylake-SP, Ice Lake, Sapphire Rapids, Zen 4 and later). Compiled with
/// `-target-cpu skylake-avx512` (x86-64-v4 plus tuning): one zmm accumulator per row of a 6-row tile, the input
/// value broadcast from memory inside each FMA, Winograd's transforms 16 channels at a time. 12-row tiles ran
/// inception_v4 at batch 1 in 118–145 ms against 96–106 ms on the AMD EPYC Zen 4 here (a CPU that splits each zmm
/// operation in two); a CPU with two 512-bit FMA units (Sapphire Rapids) may want taller or wider tiles — unmeasured.
enum AVX512: KernelLevel {
    typealias Chunk = SIMD16<Float>
    static var fused: Bool { true }
    static var tileRows: Int { 6 }
    @inline(__always) static func relu(_ v: SIMD16<Float>) -> SIMD16<Float> { v.replacing(with: 0, where: v .< 0) }
    static var name: String { "avx512" }
}

public let avx512Kernels = KernelTable(AVX512.self)

