import ArgumentParser
import Foundation
import Inception
import InceptionEngine
import InceptionIO
import InceptionTraining

/// `inception bench cold` (formerly `bench --cold`): process start to the first result for one image.
struct BenchCold: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cold",
        abstract: """
            The time from process start to the first result for one image: loading the weights (--weights, else \
            random ones), planning, one forward pass.
            """)

    @OptionGroup var model: TimedModelOption

    @Option(help: "Square input size (default: the model's own).")
    var inputSize: Int?

    @OptionGroup var threads: ThreadsOption

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        try FlagRule.inputSize(inputSize, for: model.name)
    }

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

    func run() throws {
        try reportingErrors { try runCold() }
    }

    func runCold() throws {
        let route = try model.precision.route()
        let name = model.name
        let size = inputSize ?? name.spec.inputSize
        let loadStart = DispatchTime.now().uptimeNanoseconds
        let net = try model.load(size: size, route: route, threads: threads.threads)
        let loaded = DispatchTime.now().uptimeNanoseconds
        _ = try net.compiled.run(Tensor(zeros: [1, size, size, 3]), threads: threads.threads)
        let done = DispatchTime.now().uptimeNanoseconds
        let total = Self.secondsSinceProcessStart() * 1000
        let load = Double(loaded - loadStart) / 1e6, forward = Double(done - loaded) / 1e6
        if json {
            try printJSON(["model": name.rawValue, "cold_start_ms": total, "load_ms": load, "first_forward_ms": forward,
                           "peak_rss_mb": Benchmark.peakResidentMegabytes(), "weights": model.weights ?? "random",
                           "isa": Kernels.current.name, "precision": route.precision.rawValue])
        } else {
            print(String(format: """
                %@: %.0f ms from process start to the first result (loading %@ %.0f ms, first forward pass %.0f ms), \
                peak RSS %.0f MB
                """,
                         name.rawValue, total, model.weights == nil ? "random weights" : "weights", load, forward,
                         Benchmark.peakResidentMegabytes()))
        }
    }
}

/// `inception bench train` (formerly `bench --train`): training steps from He-initialised weights.
struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: """
            Median time of a training step (forward and backward in train mode, label-smoothed cross-entropy, the \
            paper's RMSProp update), from He-initialised weights.
            """)

    @OptionGroup var model: ModelOption

    @OptionGroup var bench: TimedRunOption

    @Flag(help: "Print forward and backward time per layer kind.")
    var profile = false

    @Flag(help: "With TF-slim's auxiliary classifier, its loss weighted 0.4 (inception_v4, inception_resnet_v2).")
    var auxHead = false

    func validate() throws {
        try bench.input.validate(for: model.model)
        guard !auxHead || model.model.spec.auxiliaryHead else {
            throw CLIError("\(model.model) has no auxiliary head")
        }
    }

    func run() throws {
        try reportingErrors { try runTraining() }
    }

    /// Median time of a whole training step: forward and backward on batch statistics, then the optimiser.
    func runTraining() throws {
        let (name, batch, runs, threads) = (model.model, bench.input.batch, bench.timing.runs, bench.threads.threads)
        let size = bench.input.size(of: name)
        let graph = name.graph(classes: name.spec.classes ?? 1000, auxiliaryHead: auxHead)
        let measured = try Benchmark.trainingSteps(graph, batch: batch, size: size, warmup: bench.timing.warmup,
                                                   runs: runs, threads: threads, profile: profile)
        let times = measured.steps.map { $0 * 1000 }, optimizer = Benchmark.median(measured.optimizer) * 1000
        let macs = graph.macs(shapes: try graph.shapes(n: batch, h: size, w: size))
        let step = Benchmark.median(times), rss = Benchmark.peakResidentMegabytes()
        if bench.json {
            var report: [String: Any] = [
                "model": name.rawValue, "mode": "train", "batch": batch, "input_size": size, "threads": threads,
                "runs": runs, "median_ms": step, "min_ms": times.min()!, "max_ms": times.max()!,
                "optimizer_ms": optimizer, "forward_macs": macs.reduce(0, +), "peak_rss_mb": rss,
                "isa": Kernels.current.name,
            ]
            if bench.allTimes { report["times_ms"] = times }
            return try printJSON(report)
        }
        if profile { printTrainingProfile(graph, measured, macs: macs) }
        // A training step does about three forward passes' arithmetic (forward, data and weight gradients).
        let line = "%@ training step, batch %d at %d×%d, %d threads: median %.0f ms (min %.0f, max %.0f; "
            + "optimiser %.0f) over %d runs, %.1f GFLOP/s (3 × forward), peak RSS %.0f MB"
        print(String(format: line, name.rawValue, batch, size, size, threads, step, times.min()!, times.max()!,
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
