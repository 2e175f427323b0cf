import CInceptionReduced
import Foundation

/// Which implementation of the AMX tile layer (`CInceptionReduced/include/inception_amx.h`) runs the bf16 and int8
/// convolutions. Both run the same kernel; the emulator computes exactly what the tile unit computes (measured bit
/// for bit on a Sapphire Rapids Xeon: docs/precision.md, "AMX: the tile unit, and its emulator").
package enum AMXBackend: Sendable, Hashable, CustomStringConvertible {
    /// TDPBF16PS and TDPBUSD on the CPU's tile unit (Intel Xeon of the Sapphire Rapids class and later).
    case instructions
    /// The tile operations on plain memory, on any CPU: for tests, and to check the AMX routes without AMX.
    case emulator

    /// The backend's number in `inception_amx.h`, for calling the tile layer.
    package var code: Int32 {
        self == .instructions ? Int32(INCEPTION_AMX_INSTRUCTIONS) : Int32(INCEPTION_AMX_EMULATOR)
    }

    package var description: String { self == .instructions ? "instructions" : "emulator" }
}

/// Whether this process runs bf16 and int8 through AMX, chosen once at start.
package enum AMX {
    /// `INCEPTION_AMX` read once: unset or empty, the instructions where CPUID, XCR0 and Linux allow them (nothing
    /// otherwise); `emulate`, the emulator on any CPU; `off`, no AMX (today's AVX-512 and AVX2 routes).
    static let selection = select(ProcessInfo.processInfo.environment["INCEPTION_AMX"]) { usable }

    /// `inception_amx_usable()`, asked once (it asks Linux for the tile state): 0 yes, 1 no AMX, 2 Linux refused it.
    private static let usable = inception_amx_usable()

    /// The backend every bf16 and int8 convolution uses, nil for none.
    package static var backend: AMXBackend? {
        if let notice = selection.notice { Diagnostics.noticeOnce(notice) }
        return selection.backend
    }

    /// Whether this CPU runs the tile instructions here (whatever `INCEPTION_AMX` says): the backends a test can use
    /// are the emulator, and these where true.
    package static var instructionsUsable: Bool { usable == 0 }

    /// Every backend this process can run: the emulator, and the instructions where the CPU has them.
    package static var backends: [AMXBackend] { [.emulator] + (instructionsUsable ? [.instructions] : []) }

    /// What is wrong with `INCEPTION_AMX`, if anything (the command line reports it as its one-line error).
    package static var environmentProblem: String? { selection.problem }

    /// The backend `value` asks for; `usable` answers as `inception_amx_usable` does. `notice` is the one line a
    /// refusal prints before the other routes run.
    static func select(_ value: String?, usable: () -> Int32)
        -> (backend: AMXBackend?, problem: String?, notice: String?)
    {
        switch value ?? "" {
        case "emulate": return (.emulator, nil, nil)
        case "off": return (nil, nil, nil)
        case "":
            switch usable() {
            case 0: return (.instructions, nil, nil)
            case 2:
                return (nil, nil, "AMX: Linux refused this process the tile state (arch_prctl "
                            + "ARCH_REQ_XCOMP_PERM); bf16 and int8 take the AVX-512 routes")
            default: return (nil, nil, nil)
            }
        default:
            return (nil, "INCEPTION_AMX=\(value!) is not a setting; use emulate or off (unset: the instructions "
                        + "where the CPU has them)", nil)
        }
    }
}
