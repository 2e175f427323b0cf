import InceptionKernels

/// Any x86-64 (SSE2, no FMA: a multiply and an add) or arm64 (NEON, with FMA). Compiled with no CPU flag.
enum Baseline: KernelLevel {
    #if arch(arm64)
    typealias Chunk = SIMD4<Float>
    static var fused: Bool { true }
    static var tiles: [TileShape] { [TileShape(rows: 6, panels: 1), TileShape(rows: 3, panels: 2)] }
    #else
    typealias Chunk = SIMD4<Float>
    static var fused: Bool { false }
    static var tiles: [TileShape] { [TileShape(rows: 3, panels: 1)] }
    #endif
    @inline(__always) static func relu(_ v: SIMD4<Float>) -> SIMD4<Float> { v.replacing(with: 0, where: v .< 0) }
    static var instructionSet: InstructionSet { .baseline }
}

public let baselineKernels = KernelTable(Baseline.self)
