import ArgumentParser
import Foundation
import Inception
import InceptionEngine
import InceptionIO

/// `inception bench kernels` (formerly `bench --kernels`): each distinct convolution shape alone, by each algorithm
/// and register tile; `--save` keeps the fastest for this CPU.
struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: """
            Time each distinct convolution shape of the model alone, by each algorithm and register tile, and print \
            GFLOP/s (kernel micro-benchmarks).
            """)

    @OptionGroup var model: ModelOption

    @OptionGroup var input: BenchInputOption

    @Option(help: "Timed runs of each layer by each algorithm and tile (the median is kept).")
    var runs = 10

    @OptionGroup var threads: ThreadsOption

    @Flag(help: "Print JSON.")
    var json = false

    @Flag(help: """
        Keep each layer's faster algorithm for this CPU and kernel level, in the file every later run reads \
        (INCEPTION_KERNEL_TABLE, else ~/.cache/inception/kernel-choices-LEVEL-CPU.json).
        """)
    var save = false

    func validate() throws {
        try input.validate(for: model.model)
        try FlagRule.count(runs, "--runs", in: 1...1_000_000)
    }

    func run() throws {
        try reportingErrors { try runKernels() }
    }

    /// Every distinct (geometry, input size) of the model's convolutions, each run alone `runs` times (median) by
    /// the implicit GEMM and, where the layer allows it, by Winograd at each tile its 3-tap axes allow; then by the
    /// algorithm it runs (after `--save`, the fastest) at each register tile of this CPU's kernel level. GFLOP/s
    /// counts the direct algorithm's multiply-adds, so a faster algorithm shows as more GFLOP/s.
    func runKernels() throws {
        let name = model.model
        let graph = name.graph()
        let size = input.size(of: name)
        let shapes = try graph.shapes(n: input.batch, h: size, w: size)
        var seen = Set<String>(), rows: [[String: Any]] = []
        var table = AlgorithmTable.saved ?? AlgorithmTable(cpu: AlgorithmTable.thisCPU, isa: Kernels.current.name)
        var tiles = table.tilesOfThisBuild
        let candidates = Kernels.current.tiles
        if !json {
            print("\(Kernels.current.name) kernels; GFLOP/s by algorithm, then by register tile")
            let tileColumns: String = candidates.map { $0.description.leftPadded(8) }.joined()
            let geometry = "geometry (in → out, kernel, stride)".padding(toLength: 40, withPad: " ", startingAt: 0)
            let header: String = geometry + "input".leftPadded(12) + "GMAC".leftPadded(8) + "direct".leftPadded(10)
                + "winograd".leftPadded(10)
            print(header + tileColumns + "  chosen (fastest), tile")
        }
        for (i, node) in graph.nodes.enumerated() {
            guard case let .convolution(g, _, _) = node.operation else { continue }
            let x = shapes[node.inputs[0]], side = max(shapes[i].h, shapes[i].w)
            guard seen.insert("\(g) \(x)").inserted else { continue }
            let times = try Benchmark.convolutionChoices(g, input: x, side: side, runs: runs, threads: threads.threads)
            let fastest = times.min { $0.value < $1.value }!.key
            if times.count > 1 { table.choices[AlgorithmTable.key(g, side: side)] = fastest }
            // What the layer runs now, its tile resolved as `WinogradTransform.forTaps` resolves it.
            var chosen = ConvolutionAlgorithms.forThisCPU.choice(g, side: side)
            if chosen == .winograd(tile: nil) && (g.kernelH == 3 || g.kernelW == 3) {
                chosen = .winograd(tile: WinogradTransform.forTaps(3, side: side)!.m)
            }
            if times[chosen] == nil { chosen = .direct }
            let tileTimes = try Benchmark.tileChoices(g, input: x, side: side, choice: save ? fastest : chosen,
                                                      runs: runs, threads: threads.threads)
            let fastestTile = tileTimes.times.min { $0.value < $1.value }!.key
            let tile = tiles[tileTimes.key].map { "\($0) (measured)" } ?? "\(Kernels.current.builtInTile) (built in)"
            if save { tiles[tileTimes.key] = fastestTile }
            let row = KernelRow(g: g, x: x, macs: shapes[i].count * g.depth, times: times, chosen: chosen,
                                fastest: fastest, tiles: tileTimes.times, tile: tile)
            if json { rows.append(row.json) } else { print(row.line(candidates)) }
        }
        if json {
            try printJSON(["model": name.rawValue, "batch": input.batch, "input_size": size, "kernels": rows,
                           "isa": Kernels.current.name, "tile_candidates": candidates.map(\.description)])
        }
        guard save else { return }
        (table.tiles, table.build) = (tiles, AlgorithmTable.thisBuild)
        try Self.save(table)
    }

    /// One layer of `bench kernels`: its times by algorithm and by tile, as a line or as JSON.
    struct KernelRow {
        let g: ConvGeometry, x: Shape, macs: Int, times: [ConvolutionChoice: Double]
        let chosen: ConvolutionChoice, fastest: ConvolutionChoice, tiles: [TileShape: Double], tile: String

        func rate(_ t: Double) -> Double { 2 * Double(macs) / t / 1e9 }

        var json: [String: Any] {
            var row: [String: Any] = ["kernel": [g.kernelH, g.kernelW], "stride": g.strideH, "macs": macs]
            (row["in_channels"], row["out_channels"], row["input"]) = (g.inChannels, g.outChannels, [x.n, x.h, x.w])
            (row["chosen"], row["fastest"], row["tile"]) = ("\(chosen)", "\(fastest)", tile)
            row["direct_gflops"] = rate(times[.direct]!)
            row["winograd_gflops"] = times.filter { $0.key != .direct }.values.min().map(rate) ?? NSNull()
            row["gflops"] = Dictionary(uniqueKeysWithValues: times.map { ("\($0.key)", rate($0.value)) })
            row["tile_gflops"] = Dictionary(uniqueKeysWithValues: tiles.map { ("\($0.key)", rate($0.value)) })
            return row
        }

        func line(_ candidates: [TileShape]) -> String {
            let label = "\(g.inChannels) → \(g.outChannels), \(g.kernelH)×\(g.kernelW), /\(g.strideH)"
            let winograd = times.filter { $0.key != .direct }.values.min()
            let head: String = label.padding(toLength: 40, withPad: " ", startingAt: 0) + "\(x.h)×\(x.w)".leftPadded(12)
                + String(format: "%8.3f%10.1f", Double(macs) / 1e9, rate(times[.direct]!))
            let byTile: String = candidates.map { tiles[$0].map { String(format: "%8.1f", rate($0)) } ?? "       -" }
                .joined()
            return head + (winograd.map { String(format: "%10.1f", rate($0)) } ?? "         -") + byTile
                + "  \(chosen) (\(fastest)), \(tile)"
        }
    }

    /// Writes the measured choices where every later run reads them (merged with those already kept).
    static func save(_ table: AlgorithmTable) throws {
        try table.save()
        let faster = table.choices.values.filter { $0 != .direct }.count
        FileHandle.standardError.write(Data(("saved \(table.choices.count) layer choices (\(faster) by Winograd) and "
            + "\(table.tiles?.count ?? 0) register tiles to \(AlgorithmTable.url.path)\n").utf8))
    }
}

