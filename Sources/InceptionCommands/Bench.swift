import ArgumentParser
import InceptionTraining
import Foundation
import Inception
import InceptionEngine
import InceptionIO

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Median latency of the forward pass after warm-up, on random weights, and the GFLOP/s it reached.")

    @OptionGroup var model: ModelOption

    @Option(help: "Batch size.")
    var batch: Int = 1

    @Option(help: "Timed runs.")
    var runs: Int = 10

    @Option(help: "Untimed runs first.")
    var warmup: Int = 2

    @Option(help: "Square input size (default: the model's own).")
    var inputSize: Int?

    @OptionGroup var threads: ThreadsOption

    @Flag(help: "Print JSON.")
    var json = false

    @Flag(help: "With --json, include every timed run's milliseconds as `times_ms`.")
    var allTimes = false

    @Flag(help: """
        Report the time from process start to the first result for one image instead: loading the weights (--weights, \
        else random ones), planning, one forward pass.
        """)
    var cold = false

    @Option(help: """
        The weights file to load (default: random weights; with --precision int8, random weights quantised on \
        random images).
        """)
    var weights: String?

    @OptionGroup var precision: PrecisionOption

    @Flag(help: """
        Time each distinct convolution shape of the model alone, by each algorithm, and print GFLOP/s (kernel \
        micro-benchmarks).
        """)
    var kernels = false

    @Flag(help: """
        With --kernels: keep each layer's faster algorithm for this CPU and kernel level, in the file every later \
        run reads (INCEPTION_KERNEL_TABLE, else ~/.cache/inception/kernel-choices-LEVEL-CPU.json).
        """)
    var save = false

    @Flag(help: "Use the implicit GEMM for every convolution (no Winograd), for comparison.")
    var direct = false

    @Flag(help: "Print time per layer kind and per stage, the GFLOP/s each reached and its share of the total.")
    var profile = false

    @Flag(help: """
        Time training steps instead (forward and backward in train mode, label-smoothed cross-entropy, the paper's \
        RMSProp update), from He-initialised weights; with --profile, forward and backward time per layer kind.
        """)
    var train = false

    @Flag(help: """
        With --train: with TF-slim's auxiliary classifier, its loss weighted 0.4 (inception_v4, inception_resnet_v2).
        """)
    var auxHead = false

    @Option(help: """
        Time class activation maps by this method instead (`inception explain` at the last block: a forward pass, \
        the backward pass to that block, the maps).
        """)
    var explain: CAMMethod?

    func validate() throws {
        try FlagRule.batch(batch)
        try FlagRule.count(runs, "--runs", in: 1...1_000_000)
        try FlagRule.count(warmup, "--warmup", in: 0...1_000_000)
        try FlagRule.inputSize(inputSize, for: model.model)
        guard !auxHead || train else { throw CLIError("--aux-head is for --train") }
        guard explain == nil || !(train || kernels || cold || profile) else {
            throw CLIError("--explain times explanations alone (not with --train, --kernels, --cold or --profile)")
        }
        guard precision.precision == .fp32 || !(train || kernels) else {
            throw CLIError("--precision is for the forward pass (not --train or --kernels)")
        }
        guard !auxHead
            || model.model.spec.auxiliaryHead else { throw CLIError("\(model.model) has no auxiliary head") }
    }

    func run() throws {
        try reportingErrors {
            if cold { return try runCold() }
            if kernels { return try runKernels() }
            if train { return try runTraining() }
            let route = try precision.route()
            let name = model.model
            let size = inputSize ?? name.spec.inputSize
            let net = try load(name, size: size, route: route)
            let macs = net.graph.macs(shapes: try net.graph.shapes(n: batch, h: size, w: size))
            try net.checkMemory(batch: batch, size: size)
            let input = Benchmark.randomInput(batch: batch, size: size)
            let times = try (explain.map {
                try Benchmark.explain(net, input, method: $0, warmup: warmup, runs: runs, threads: threads.threads)
            } ?? Benchmark.forward(net, input, warmup: warmup, runs: runs, threads: threads.threads)).map { $0 * 1000 }
            if profile {
                printProfile(net, try Benchmark.profile(net, input, runs: runs, threads: threads.threads), macs: macs)
            }
            let median = Benchmark.median(times)
            let gflops = 2 * Double(macs.reduce(0, +)) / (median / 1000) / 1e9
            let fp32 = try fp32Median(name, size: size, input: input, route: route)
            if json {
                var report: [String: Any] = [
                    "model": name.rawValue, "batch": batch, "input_size": size, "threads": threads.threads,
                        "runs": runs,
                    "median_ms": median, "min_ms": times.min()!, "max_ms": times.max()!, "gflops": gflops,
                    "macs": macs.reduce(0, +), "peak_rss_mb": Benchmark.peakResidentMegabytes(),
                    "isa": Kernels.current.name, "precision": precision.precision.rawValue,
                    "route": route.name, "amx": ReducedKernels.current.amx.map { "\($0)" } ?? NSNull(),
                    "explain": explain?.rawValue ?? NSNull(),
                ]
                if let fp32 { report["fp32_median_ms"] = fp32 }
                if allTimes { report["times_ms"] = times }
                try printJSON(report)
            } else {
                let line = "%@ batch %d at %d×%d, %d threads, %@ kernels, %@ (%@): median %.1f ms "
                    + "(min %.1f, max %.1f) over %d runs, %.1f GFLOP/s, peak RSS %.0f MB"
                print(String(format: line,
                             name.rawValue, batch, size, size, threads.threads, Kernels.current.name,
                             precision.precision.rawValue, route.name, median,
                             times.min()!, times.max()!, runs, gflops, Benchmark.peakResidentMegabytes()))
                if let fp32, fp32 < median {
                    print(String(format: "bf16 by %@ is %.2f× slower than fp32 on this CPU (fp32: median %.1f ms, "
                                 + "same run): use fp32 here", route.name, median / fp32, fp32))
                }
            }
        }
    }
}

extension Bench {
    /// With bf16 on the AVX512-BF16 route, fp32's median time of the same model and input, timed next (nil
    /// otherwise): on some cores VDPBF16PS runs at half the fp32 FMA rate (the Xeon in docs/performance.md), and
    /// there bf16 is slower than fp32, which the user should hear from the benchmark.
    func fp32Median(_ name: ModelName, size: Int, input: Tensor, route: PrecisionRoute) throws -> Double? {
        guard route.precision == .bf16 && route.kernels.amx == nil else { return nil }
        let net = try load(name, size: size, route: .fp32)
        let times = try Benchmark.forward(net, input, warmup: warmup, runs: runs, threads: threads.threads)
        return Benchmark.median(times) * 1000
    }

    /// The model to time: `--weights` or random weights (quantised on random images for int8 without a quantised
    /// checkpoint), at `--precision`.
    func load(_ name: ModelName, size: Int, route: PrecisionRoute) throws -> InceptionModel {
        var loaded = try weights.map { try ModelWeights(name, file: URL(fileURLWithPath: $0)) }
            ?? ModelWeights(name, randomSeed: 1)
        if route.precision == .int8 && weights == nil {
            loaded = try Quantization.quantized(loaded, calibration: Benchmark.randomInput(batch: 2, size: size),
                                                threads: threads.threads)
        }
        return try InceptionModel(loaded, algorithms: direct ? .direct : .forThisCPU, route: route)
    }

    /// Prints the median time of each layer kind and of each stage, from each node's median seconds.
    func printProfile(_ net: InceptionModel, _ nodeTime: [Double], macs: [Int]) {
        let graph = net.graph
        let total = nodeTime.reduce(0, +)
        func table(_ title: String, _ key: (Int) -> String) {
            var order: [String] = [], time: [String: Double] = [:], work: [String: Int] = [:]
            for i in graph.nodes.indices where nodeTime[i] > 0 || macs[i] > 0 {
                let k = key(i)
                if time[k] == nil { order.append(k) }
                time[k, default: 0] += nodeTime[i]
                work[k, default: 0] += macs[i]
            }
            let width = max(20, (order.map(\.count).max() ?? 0) + 2)  // stage names are up to 25 characters
            print(title.padding(toLength: width, withPad: " ", startingAt: 0) + "ms".leftPadded(9)
                  + "share".leftPadded(8)
                  + "GMAC".leftPadded(9) + "GFLOP/s".leftPadded(10))
            for k in order {
                let t = time[k]!
                let rate = t > 0 ? 2 * Double(work[k]!) / t / 1e9 : 0
                print(k.padding(toLength: width, withPad: " ", startingAt: 0)
                      + String(format: "%9.2f%7.1f%%%9.3f%10.1f", t * 1000,
                      100 * t / total, Double(work[k]!) / 1e9, rate))
            }
            print("")
        }
        // A residual fused into its convolution reports under the residual node: attribute it to the conv.
        table("layer kind") { i in
            if case .residual = graph.nodes[i].operation,
                case .convolution = graph.nodes[graph.nodes[i].inputs[1]].operation {
                return "conv 1×1/1"
            }
            return graph.kind(of: i)
        }
        table("stage") { graph.nodes[$0].stage }
        print(String(format: "profiled total %.1f ms (sum of per-layer medians)", total * 1000))
        let compiled = net.compiled
        print("convolutions: \(compiled.winogradLayers) by Winograd, \(compiled.mergedConvolutions) merged into "
              + "sibling GEMMs (timed under the first of each group), \(compiled.fusedResiduals) residuals fused\n")
    }
}

extension Bench {
    /// Seconds since this process started (Linux: from /proc; elsewhere: since the first call).
    static func secondsSinceProcessStart() -> Double {
        #if os(Linux)
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
           let uptime = try? String(contentsOfFile: "/proc/uptime", encoding: .utf8),
           let close = stat.lastIndex(of: ")") {
            // Field 22, counting from the command name in parentheses as field 2: start time in clock ticks.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 19, let ticks = Double(fields[19]), let now = Double(uptime.split(separator: " ")[0]) {
                return now - ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
            }
        }
        #endif
        return ProcessInfo.processInfo.systemUptime - processStart
    }
    static let processStart = ProcessInfo.processInfo.systemUptime

    func runCold() throws {
        let route = try precision.route()
        let name = model.model
        let size = inputSize ?? name.spec.inputSize
        let loadStart = DispatchTime.now().uptimeNanoseconds
        let net = try load(name, size: size, route: route)
        let loaded = DispatchTime.now().uptimeNanoseconds
        _ = try net.compiled.run(Tensor(zeros: [1, size, size, 3]), threads: threads.threads)
        let done = DispatchTime.now().uptimeNanoseconds
        let total = Self.secondsSinceProcessStart() * 1000
        let load = Double(loaded - loadStart) / 1e6, forward = Double(done - loaded) / 1e6
        if json {
            try printJSON(["model": name.rawValue, "cold_start_ms": total, "load_ms": load, "first_forward_ms": forward,
                           "peak_rss_mb": Benchmark.peakResidentMegabytes(), "weights": weights ?? "random",
                           "isa": Kernels.current.name, "precision": precision.precision.rawValue])
        } else {
            print(String(format: """
                %@: %.0f ms from process start to the first result (loading %@ %.0f ms, first forward pass %.0f ms), \
                peak RSS %.0f MB
                """,
                         name.rawValue, total, weights == nil ? "random weights" : "weights", load, forward,
                         Benchmark.peakResidentMegabytes()))
        }
    }
}

extension Bench {
    /// Every distinct (geometry, input size) of the model's convolutions, each run alone `runs` times (median) by
    /// the implicit GEMM and, where the layer allows it, by Winograd at each tile its 3-tap axes allow; then by the
    /// algorithm it runs (after `--save`, the fastest) at each register tile of this CPU's kernel level. GFLOP/s
    /// counts the direct algorithm's multiply-adds, so a faster algorithm shows as more GFLOP/s.
    func runKernels() throws {
        let name = model.model
        let graph = name.graph()
        let size = inputSize ?? name.spec.inputSize
        let shapes = try graph.shapes(n: batch, h: size, w: size)
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
            try printJSON(["model": name.rawValue, "batch": batch, "input_size": size, "kernels": rows,
                           "isa": Kernels.current.name, "tile_candidates": candidates.map(\.description)])
        }
        guard save else { return }
        (table.tiles, table.build) = (tiles, AlgorithmTable.thisBuild)
        try Self.save(table)
    }

    /// One layer of `bench --kernels`: its times by algorithm and by tile, as a line or as JSON.
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

extension Bench {
    /// Median time of a whole training step: forward and backward on batch statistics, then the optimiser.
    func runTraining() throws {
        let name = model.model
        let size = inputSize ?? name.spec.inputSize
        let graph = name.graph(classes: name.spec.classes ?? 1000, auxiliaryHead: auxHead)
        let measured = try Benchmark.trainingSteps(graph, batch: batch, size: size, warmup: warmup, runs: runs,
                                                   threads: threads.threads, profile: profile)
        let times = measured.steps.map { $0 * 1000 }, optimizer = Benchmark.median(measured.optimizer) * 1000
        let macs = graph.macs(shapes: try graph.shapes(n: batch, h: size, w: size))
        let step = Benchmark.median(times), rss = Benchmark.peakResidentMegabytes()
        if json {
            var report: [String: Any] = [
                "model": name.rawValue, "mode": "train", "batch": batch, "input_size": size, "threads": threads.threads,
                "runs": runs, "median_ms": step, "min_ms": times.min()!, "max_ms": times.max()!,
                "optimizer_ms": optimizer, "forward_macs": macs.reduce(0, +), "peak_rss_mb": rss,
                "isa": Kernels.current.name,
            ]
            if allTimes { report["times_ms"] = times }
            return try printJSON(report)
        }
        if profile { printTrainingProfile(graph, measured, macs: macs) }
        // A training step does about three forward passes' arithmetic (forward, data and weight gradients).
        let line = "%@ training step, batch %d at %d×%d, %d threads: median %.0f ms (min %.0f, max %.0f; "
            + "optimiser %.0f) over %d runs, %.1f GFLOP/s (3 × forward), peak RSS %.0f MB"
        print(String(format: line, name.rawValue, batch, size, size, threads.threads, step, times.min()!, times.max()!,
                     optimizer, runs, 6 * Double(macs.reduce(0, +)) / (step / 1000) / 1e9, rss))
    }

    /// Time per layer kind and direction, with the GFLOP/s each reached; a backward pass does twice the forward
    /// multiply-adds (data and weight gradients).
    func printTrainingProfile(_ graph: Graph, _ measured: TrainingStepTimes, macs: [Int]) {
        var work: [String: Int] = [:]
        for (i, m) in macs.enumerated() where m > 0 {
            work[graph.kind(of: i, batchNorm: true) + " forward", default: 0] += m
            work[graph.kind(of: i, batchNorm: true) + " backward", default: 0] += 2 * m
        }
        let optimizer = Benchmark.median(measured.optimizer) * 1000
        let rows = measured.byKind.map { ($0.key, Benchmark.median($0.value) * 1000) }.sorted { $0.1 > $1.1 }
        let total = rows.reduce(0) { $0 + $1.1 } + optimizer
        print("step part".padding(toLength: 30, withPad: " ", startingAt: 0) + "ms".leftPadded(9)
              + "share".leftPadded(8) + "GFLOP/s".leftPadded(10))
        for (k, t) in rows + [("optimizer", optimizer)] {
            let rate = work[k].map { String(format: "%10.1f", 2 * Double($0) / (t / 1000) / 1e9) } ?? ""
            print(k.padding(toLength: 30, withPad: " ", startingAt: 0)
                  + String(format: "%9.1f%7.1f%%", t, 100 * t / total) + rate)
        }
        print("")
    }
}
