import Foundation
import InceptionEngine

/// How each layer runs — the implicit GEMM, or Winograd at its fastest tile — measured on this machine's CPU class
/// and kept in a file that `inception bench kernels --save` writes: `$INCEPTION_KERNEL_TABLE`, else
/// `kernel-choices-<level>-<cpu>.json` in `$XDG_CACHE_HOME/inception` (or `~/.cache/inception`). Without one, the
/// built-in rule (`.automatic`). The same file keeps each layer's register tile, measured on this CPU by this build
/// (``TileTuning/forThisCPU``).
extension ConvolutionAlgorithms {
    /// The measured table for this CPU and kernel level if one is saved, else `.automatic`.
    public static let forThisCPU: ConvolutionAlgorithms =
        AlgorithmTable.saved.flatMap { $0.choices.isEmpty ? nil : .measured($0) } ?? .automatic
}

extension AlgorithmTable {
    /// The CPU's model name (Linux: /proc/cpuinfo), or the architecture where it cannot be read.
    package static let thisCPU: String = {
        let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let line = info.split(separator: "\n").first { $0.hasPrefix("model name") }
        return line.flatMap { $0.split(separator: ":", maxSplits: 1).last }
            .map { $0.trimmingCharacters(in: .whitespaces) } ?? ProcessInfo.processInfo.machineArchitecture
    }()

    /// Where the table for this CPU and the current kernel level is kept.
    package static var url: URL {
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
    package static let saved: AlgorithmTable? = read()

    /// The table in the file now (another process may have written it since `saved` was read).
    static func read() -> AlgorithmTable? {
        guard let data = try? Data(contentsOf: url), let table = try? JSONDecoder().decode(AlgorithmTable.self,
            from: data),
              table.cpu == thisCPU, table.isa == Kernels.current.name else { return nil }
        return table
    }

    /// This binary, as its size and modification time: tiles measured by another build are measured again.
    package static let thisBuild: String = {
        let path = Bundle.main.executableURL?.resolvingSymlinksInPath().path ?? CommandLine.arguments[0]
        let attributes = (try? FileManager.default.attributesOfItem(atPath: path)) ?? [:]
        let size = (attributes[.size] as? NSNumber)?.intValue ?? 0
        let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        return "\(size)-\(Int(modified))"
    }()

    /// The tiles kept for this build.
    package var tilesOfThisBuild: [String: TileShape] { build == Self.thisBuild ? tiles ?? [:] : [:] }
}

extension TileTuning {
    /// What this process measured: `AlgorithmTable.saved` was read at start, so a second load of the same network
    /// would otherwise measure it again.
    private static let recorded = Locked<[String: TileShape]>([:])

    /// The tiles kept for this CPU, kernel level and build; layers without one are measured as the model loads (at
    /// most 2 s, the largest layers first, one line to `Diagnostics`) and kept in the kernel-choices file of
    /// `~/.cache/inception`. With
    /// `INCEPTION_TUNE=0`, the built-in tile and no measuring.
    public static var forThisCPU: TileTuning {
        guard enabled else { return .builtIn }
        let known = (AlgorithmTable.saved?.tilesOfThisBuild ?? [:]).merging(recorded.withLock { $0 }) { $1 }
        return TileTuning(known: known, measure: true, announce: { layers in
            Diagnostics.debug("measuring the register tiles of \(layers) layers on this CPU "
                + "(once; kept in \(AlgorithmTable.url.path); INCEPTION_TUNE=0 skips)")
        }, record: { measured in
            guard !measured.isEmpty else { return }
            recorded.withLock { $0.merge(measured) { $1 } }
            var table = AlgorithmTable.read() ?? AlgorithmTable(cpu: AlgorithmTable.thisCPU, isa: Kernels.current.name)
            table.tiles = table.tilesOfThisBuild.merging(measured) { $1 }
            table.build = AlgorithmTable.thisBuild
            try? table.save()
        })
    }
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
