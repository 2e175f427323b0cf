import CInceptionSystem
import Foundation

/// What this CPU and its operating system offer the kernels, asked once (`inception_cpu_features`, one CPUID probe):
/// the x86-64 levels the kernel tables are compiled for, and the reduced-precision instructions the bf16 and int8
/// tiles use. Empty on arm64 and older x86-64.
package struct CPUFeatures: OptionSet, Sendable, Hashable {
    package let rawValue: Int
    package init(rawValue: Int) { self.rawValue = rawValue }

    /// x86-64-v3: AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE, and the OS saves the ymm state (the `avx2` level).
    package static let avx2 = CPUFeatures(rawValue: 1 << 0)
    /// x86-64-v4: AVX-512 F/BW/CD/DQ/VL, and the OS saves the zmm state (the `avx512` level).
    package static let avx512 = CPUFeatures(rawValue: 1 << 1)
    /// VDPBF16PS, with the AVX-512 level.
    package static let avx512BF16 = CPUFeatures(rawValue: 1 << 2)
    /// VPDPBUSD on zmm, with the AVX-512 level.
    package static let avx512VNNI = CPUFeatures(rawValue: 1 << 3)
    /// AMX's tile unit with BF16, its state saved by the OS (`AMX` asks Linux for it before use).
    package static let amxBF16 = CPUFeatures(rawValue: 1 << 4)
    /// VPDPBUSD on ymm, with the AVX2 level.
    package static let avxVNNI = CPUFeatures(rawValue: 1 << 5)
    /// AMX's tile unit with INT8 (TDPBUSD), as `amxBF16`.
    package static let amxInt8 = CPUFeatures(rawValue: 1 << 6)

    /// This process's CPU, asked once. `INCEPTION_NO_AVX_VNNI=1` hides AVX-VNNI (to run and time the AVX2 int8 route
    /// on a CPU that has both).
    package static let current: CPUFeatures = {
        var features = CPUFeatures(rawValue: Int(inception_cpu_features()))
        if ProcessInfo.processInfo.environment["INCEPTION_NO_AVX_VNNI"] == "1" { features.remove(.avxVNNI) }
        return features
    }()
}
