import Foundation
import InceptionEngine

/// How each layer runs — the implicit GEMM, or Winograd at its fastest tile — measured on this machine's CPU class
/// and kept in a file that `inception bench --kernels --save` writes: `$INCEPTION_KERNEL_TABLE`, else
/// `kernel-choices-<level>-<cpu>.json` in `$XDG_CACHE_HOME/inception` (or `~/.cache/inception`). Without one, the
/// built-in rule (`.automatic`).
extension ConvolutionAlgorithms {
    /// The measured table for this CPU and kernel level if one is saved, else `.automatic`.
    public static let forThisCPU: ConvolutionAlgorithms = AlgorithmTable.saved.map { .measured($0) } ?? .automatic
}

extension AlgorithmTable {
    /// The CPU's model name (Linux: /proc/cpuinfo), or the architecture where it cannot be read.
    public static let thisCPU: String = {
        let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let line = info.split(separator: "\n").first { $0.hasPrefix("model name") }
        return line.flatMap { $0.split(separator: ":", maxSplits: 1).last }
            .map { $0.trimmingCharacters(in: .whitespaces) } ?? ProcessInfo.processInfo.machineArchitecture
    }()

    /// Where the table for this CPU and the current kernel level is kept.
    public static var url: URL {
        let environment = ProcessInfo.processInfo.environment
        if let path = environment["INCEPTION_KERNEL_TABLE"], !path.isEmpty { return URL(fileURLWithPath: path) }
        let cache = environment["XDG_CACHE_HOME"].map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache")
        // FNV-1a of the model name: a file name that any CPU string can make.
        let hash = thisCPU.utf8.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
        return cache.appendingPathComponent("inception")
            .appendingPathComponent("kernel-choices-\(Kernels.current.name)-\(String(hash, radix: 16)).json")
    }

    /// The saved table, if there is one for this CPU and kernel level (a file for another is ignored).
    public static let saved: AlgorithmTable? = {
        guard let data = try? Data(contentsOf: url), let table = try? JSONDecoder().decode(AlgorithmTable.self,
            from: data),
              table.cpu == thisCPU, table.isa == Kernels.current.name else { return nil }
        return table
    }()
}

extension ProcessInfo {
    var machineArchitecture: String {
        #if arch(x86_64)
        "x86_64"
        #elseif arch(arm64)
        "arm64"
        #else
        "unknown"
        #endif
    }
}
