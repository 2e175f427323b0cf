import InceptionKernels

/// x86-64-v4: AVX-512 F/BW/CD/DQ/VL (Skylake-SP, Ice Lake, Sapphire Rapids, Zen 4 and later). Compiled with
/// `-target-cpu skylake-avx512` (x86-64-v4 plus tuning): one zmm accumulator per row and panel of a tile, the
/// input value broadcast from memory inside each FMA, Winograd's transforms 16 channels at a time. Tiles: 6 × 16
/// (6 zmm; the built-in rule, best where each zmm operation is split in two), 6 × 32 and 12 × 32 (12 and 24 zmm, for
/// a core with two 512-bit FMA units of 4 cycles' latency, which needs at least 8 independent sums); measured.
enum AVX512: KernelLevel {
    typealias Chunk = SIMD16<Float>
    static var fused: Bool { true }
    static var tiles: [TileShape] { [TileShape(rows: 6, panels: 1), TileShape(rows: 6, panels: 2),
                                     TileShape(rows: 12, panels: 2)] }
    @inline(__always) static func relu(_ v: SIMD16<Float>) -> SIMD16<Float> { v.replacing(with: 0, where: v .< 0) }
    static var instructionSet: InstructionSet { .avx512 }
}

public let avx512Kernels = KernelTable(AVX512.self)

