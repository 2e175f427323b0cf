import InceptionKernels

/// x86-64-v3: AVX2 and FMA (Haswell, Zen 1 and later). Compiled with `-target-cpu haswell` (x86-64-v3 plus tuning).
/// Tiles: 6 × 16 and 3 × 32, 12 of the 16 ymm registers as accumulators either way (a 16-lane panel is two ymm).
enum AVX2: KernelLevel {
    typealias Chunk = SIMD8<Float>
    static var fused: Bool { true }
    static var tiles: [TileShape] { [TileShape(rows: 6, panels: 1), TileShape(rows: 3, panels: 2)] }
    @inline(__always) static func relu(_ v: SIMD8<Float>) -> SIMD8<Float> { v.replacing(with: 0, where: v .< 0) }
    static var instructionSet: InstructionSet { .avx2 }
}

public let avx2Kernels = KernelTable(AVX2.self)
