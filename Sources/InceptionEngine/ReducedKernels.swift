import CInceptionReduced
import Foundation
import CInceptionSystem
import InceptionKernels

/// How an int8 layer's 32-bit words hold activations and weights.
package enum Int8Words: String, Sendable {
    /// Four u8 activations / four s8 weights a word (VPDPBUSD, and the Swift reference).
    case quads
    /// Two activations / two weights a word, as 16-bit integers (VPMADDWD on AVX2: exact where VPMADDUBSW's 16-bit
    /// pair sums saturate).
    case pairs

    var valuesPerWord: Int { self == .quads ? 4 : 2 }
}

/// The reduced-precision tiles one instruction-set level runs, chosen with it (`Kernels.current`).
package struct ReducedKernels: Sendable {
    package let bf16: ReducedMicroKernel?
    package let int8: (words: Int8Words, kernel: ReducedMicroKernel)
    /// What runs int8 and bf16, for `inception summary` and the benchmark tables.
    package let int8Name: String, bf16Name: String?
    /// The instruction-set level these micro-kernels were chosen for.
    package let level: InstructionSet
    /// The AMX tile layer's backend when the tiles are AMX's (32-row tiles over a depth padded to whole tile rows),
    /// nil for the vector tiles (6 rows).
    package let amx: AMXBackend?
    /// Whether the inputs are converted with VCVTNEPS2BF16 (AVX512-BF16) and quantised with AVX2; else in plain C
    /// or Swift.
    let vectorBF16: Bool, vectorQuantize: Bool

    /// Rows of one tile, and the multiple of 32-bit words a panel's depth is padded to.
    var tileRows: Int { amx == nil ? 6 : 32 }
    var depthMultiple: Int { amx == nil ? 1 : 16 }

    /// Why these tiles run no bf16, in one line; nil when they do.
    package var bf16Problem: String? {
        guard bf16 == nil else { return nil }
        if level != .avx512 && Kernels.supported.contains(where: { $0.instructionSet == .avx512 }) {
            return "bf16 needs the avx512 kernel level (INCEPTION_ISA=\(level) forbids it)"
        }
        return "bf16 needs AVX512-BF16 (VDPBF16PS) or AMX, which this CPU does not have"
    }

    /// The tiles for `level`: AMX's for bf16 and int8 where `amx` names a backend (`AMX.backend`: the instructions
    /// where the CPU has them); else bf16 needs AVX512-BF16 at the AVX-512 level, and int8 takes VNNI at the AVX-512
    /// level, AVX-VNNI or else VPMADDWD at AVX2, the Swift reference below that.
    package static func forLevel(_ level: KernelTable, features: CPUFeatures = .current,
                                amx: AMXBackend? = AMX.backend) -> ReducedKernels {
        let avx512 = level.instructionSet == .avx512, avx2 = level.instructionSet == .avx2
        let vectorBF16 = avx512 && features.contains(.avx512BF16)
        func kernels(bf16: ReducedMicroKernel?, _ words: Int8Words, _ int8: @escaping ReducedMicroKernel,
                     _ int8Name: String, bf16Name: String? = "avx512-bf16", amx: AMXBackend? = nil) -> ReducedKernels {
            ReducedKernels(bf16: bf16, int8: (words, int8), int8Name: int8Name, bf16Name: bf16 == nil ? nil : bf16Name,
                           level: level.instructionSet, amx: amx, vectorBF16: vectorBF16,
                           vectorQuantize: avx2 || avx512)
        }
        if let amx {
            return kernels(bf16: AMXTiles.bf16(amx), .quads, AMXTiles.int8(amx), "amx-int8", bf16Name: "amx-bf16",
                           amx: amx)
        }
        let bf16MicroKernel: ReducedMicroKernel = { a, taps, words, w, panelWords, panels, sums in
            inception_bf16_tile_avx512(c(a), taps, words, w, panelWords, panels, sums)
        }
        let bf16 = vectorBF16 ? bf16MicroKernel : nil
        if avx512 && features.contains(.avx512VNNI) {
            return kernels(bf16: bf16, .quads, { a, taps, words, w, panelWords, panels, sums in
                inception_int8_quads_tile_vnni(c(a), taps, words, w, panelWords, panels, sums)
            }, "avx512-vnni")
        }
        if (avx2 || avx512) && features.contains(.avxVNNI) {
            return kernels(bf16: bf16, .quads, { a, taps, words, w, panelWords, panels, sums in
                inception_int8_quads_tile_avxvnni(c(a), taps, words, w, panelWords, panels, sums)
            }, "avx-vnni")
        }
        if avx2 || avx512 {
            return kernels(bf16: bf16, .pairs, { a, taps, words, w, panelWords, panels, sums in
                inception_int8_pairs_tile_avx2(c(a), taps, words, w, panelWords, panels, sums)
            }, "avx2")
        }
        return kernels(bf16: nil, .quads, ReducedReference.int8QuadsMicroKernel, "reference")
    }

    /// The tiles at the level every layer runs at.
    package static let current = forLevel(Kernels.current)

    static func c(_ a: UnsafePointer<UnsafePointer<UInt32>>) -> UnsafePointer<UnsafePointer<UInt32>?> {
        UnsafeRawPointer(a).assumingMemoryBound(to: UnsafePointer<UInt32>?.self)
    }
}

/// The AMX convolution tiles (32 rows × pairs of 16-channel panels, `inception_amx_*_tile`) on one backend, as
/// `ReducedMicroKernel`s: `panelWords` is the panel's depth padded to whole tile rows of 16 words.
enum AMXTiles {
    static func bf16(_ backend: AMXBackend) -> ReducedMicroKernel {
        let code = backend.code
        return { a, taps, words, w, panelWords, panels, sums in
            inception_amx_bf16_tile(code, ReducedKernels.c(a), taps, words, w, panelWords, panels, sums)
        }
    }

    static func int8(_ backend: AMXBackend) -> ReducedMicroKernel {
        let code = backend.code
        return { a, taps, words, w, panelWords, panels, sums in
            inception_amx_int8_tile(code, ReducedKernels.c(a), taps, words, w, panelWords, panels, sums)
        }
    }
}
