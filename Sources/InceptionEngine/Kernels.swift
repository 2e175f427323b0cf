import CInceptionSystem
import Foundation
@_exported import struct InceptionKernels.KernelTable
@_exported import struct InceptionKernels.TileShape
@_exported import enum InceptionKernels.InstructionSet
import InceptionKernels
import InceptionKernelsAVX2
import InceptionKernelsAVX512
import InceptionKernelsBaseline

/// The instruction-set level the engine's kernels run at, chosen once at start: the best the CPU and its operating
/// system support, or a lower one forced with `INCEPTION_ISA=baseline|avx2|avx512`.
package enum Kernels {
    /// Every level this build has, best first.
    package static let all: [KernelTable] = [avx512Kernels, avx2Kernels, baselineKernels]

    /// The levels this CPU can run, best first.
    package static let supported: [KernelTable] = all.filter { table in
        switch table.instructionSet {
        case .avx512: return CPUFeatures.current.contains(.avx512)
        case .avx2: return CPUFeatures.current.contains(.avx2)
        case .baseline: return true
        }
    }

    /// `INCEPTION_ISA` read once: the level it asks for, or what is wrong with it.
    static let selection = select(ProcessInfo.processInfo.environment["INCEPTION_ISA"])

    /// What is wrong with `INCEPTION_ISA`, if anything (the command line reports it as its one-line error; a
    /// library caller gets the best level).
    package static let environmentProblem: String? = selection.problem

    /// The kernels every layer runs.
    package static let current: KernelTable = selection.table

    /// The table `forced` names (if the CPU can run it), else the best supported one.
    package static func select(_ forced: String?) -> (table: KernelTable, problem: String?) {
        guard let forced, !forced.isEmpty else { return (supported[0], nil) }
        guard let table = all.first(where: { $0.name == forced }) else {
            let levels = all.map(\.name).joined(separator: ", ")
            return (supported[0], "INCEPTION_ISA=\(forced) is not a level; use \(levels)")
        }
        guard supported.contains(where: { $0.name == forced }) else {
            return (supported[0], "INCEPTION_ISA=\(forced): this CPU cannot run \(forced) "
                        + "(it supports \(supported.map(\.name).joined(separator: ", ")))")
        }
        return (table, nil)
    }
}
