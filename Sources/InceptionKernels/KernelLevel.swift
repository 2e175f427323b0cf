/// The engine's hot loops, written once and compiled per instruction-set level.
///
/// Everything here is `@inlinable` and generic over a `KernelLevel`; it is compiled to machine code only where a
/// level module specialises it — `InceptionKernelsBaseline` (no CPU flag: SSE2 on x86-64, NEON on arm64),
/// `InceptionKernelsAVX2` (`-target-cpu haswell`: AVX2 + FMA) and `InceptionKernelsAVX512` (`skylake-avx512`:
/// AVX-512 F/BW/CD/DQ/VL) — each of which exports one `KernelTable`. The engine picks a table once, from CPUID
/// (`Kernels.current` in InceptionEngine), so one binary runs at its best level on every x86-64 CPU. This module
/// knows no engine type: kernels take raw pointers and counts.
///
/// A panel is 16 output channels (one `SIMD16<Float>` per row of a tile). Every level runs every `TileShape`; its
/// `tiles` are the candidates that fit its registers, measured on the running CPU to pick each layer's (the first is
/// the built-in rule's).
public protocol KernelLevel: SendableMetatype {
    /// The vector the element-wise parts (Winograd's transforms) work in.
    associatedtype Chunk: SIMD where Chunk.Scalar == Float
    /// Whether the CPU multiplies and adds in one rounding (FMA). Without it `a + b · c` is two instructions; with
    /// `addingProduct` there would be a call to `fmaf` per lane.
    static var fused: Bool { get }
    /// The register tiles worth measuring at this level, the built-in rule's first.
    static var tiles: [TileShape] { get }
    static var instructionSet: InstructionSet { get }
    /// max(v, 0) per lane. Written by each level on its concrete vector type: on a generic `SIMD` the comparison
    /// and select compile lane by lane.
    static func relu(_ v: Chunk) -> Chunk
}

/// c + a · b, fused where the level has FMA.
@inlinable @inline(__always)
func multiplyAdd<L: KernelLevel, V: SIMD>(_ level: L.Type, _ c: V, _ a: V, _ b: V) -> V where V.Scalar == Float {
    L.fused ? c.addingProduct(a, b) : c + a * b
}

/// The fp32 kernel levels this build has, by the instruction set each is compiled for (`INCEPTION_ISA`'s values).
/// A new level is a case here: the engine's switches over it then say where else it needs an answer.
public enum InstructionSet: String, CaseIterable, Sendable {
    case baseline, avx2, avx512
}

/// One level's kernels, as the engine calls them.
public struct KernelTable: Sendable {
    public let instructionSet: InstructionSet
    public var name: String { instructionSet.rawValue }
    public var builtInTile: TileShape { tiles[0] }
    /// The register tiles worth measuring at this level; the first is the built-in rule's.
    public let tiles: [TileShape]
    /// Lanes of `Chunk`.
    public let chunkLanes: Int
    public let convolution: @Sendable (MicroKernelCall) -> Void
    public let gemm: @Sendable (MicroKernelCall) -> Void
    public let winogradInput: @Sendable (WinogradInputTile) -> Void
    public let winogradOutput: @Sendable (WinogradOutputTile) -> Void

    @inlinable
    public init<L: KernelLevel>(_ level: L.Type) {
        instructionSet = L.instructionSet
        tiles = L.tiles
        chunkLanes = L.Chunk.scalarCount
        convolution = { microKernel(L.self, $0) }
        gemm = { gemmTile(L.self, $0) }
        winogradInput = { winogradInputTile(L.self, $0) }
        winogradOutput = { winogradOutputTile(L.self, $0) }
    }
}
