import ArgumentParser
import Foundation
import Inception
import InceptionEngine
import InceptionIO

/// `inception bench`: times on this CPU — the forward pass (`bench forward`, the default: `inception bench` alone
/// runs it), the first result after process start (`bench cold`), each convolution shape alone (`bench kernels`),
/// a training step (`bench train`). The flags that chose those modes before they were subcommands still do
/// (`bench --cold` runs `bench cold`: `modeAliases`).
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time a network on this CPU: the forward pass (the default), a cold start, each convolution shape, "
            + "a training step.",
        discussion: "bench --cold, --kernels and --train still run bench cold, kernels and train.",
        subcommands: [BenchForward.self, BenchCold.self, BenchKernels.self, BenchTrain.self],
        defaultSubcommand: BenchForward.self)

    /// The flags that chose a mode before the modes were subcommands, and the subcommand each now names.
    static let modeFlags = ["--cold": "cold", "--kernels": "kernels", "--train": "train"]

    /// `arguments` with `bench … --cold|--kernels|--train …` rewritten as `bench cold|kernels|train …` (the first
    /// such flag before any `--`); anything else unchanged.
    static func modeAliases(_ arguments: [String]) -> [String] {
        guard arguments.first == "bench" else { return arguments }
        let options = arguments.dropFirst().prefix { $0 != "--" }
        guard let index = options.firstIndex(where: { modeFlags[$0] != nil }) else { return arguments }
        var rest = arguments
        rest.remove(at: index)
        return ["bench", modeFlags[arguments[index]]!] + rest.dropFirst()
    }
}

/// `inception bench` (or `bench forward`): the forward pass, or with `--explain` the class activation maps.
struct BenchForward: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forward",
        abstract: "Median latency of the forward pass after warm-up, on random weights, and the GFLOP/s it "
            + "reached.")

    @OptionGroup var model: TimedModelOption

    @OptionGroup var bench: TimedRunOption

    @Flag(help: "Print time per layer kind and per stage, the GFLOP/s each reached and its share of the total.")
    var profile = false

    @Option(help: """
        Time class activation maps by this method instead (`inception explain` at the last block: a forward \
        pass, the backward pass to that block, the maps).
        """)
    var explain: CAMMethod?

    func validate() throws {
        try bench.input.validate(for: model.name)
        guard explain == nil || !profile else {
            throw CLIError("--explain times explanations alone (not with --profile)")
        }
    }

    func run() throws {
        try reportingErrors {
            let route = try model.precision.route()
            let (name, size, batch) = (model.name, bench.input.size(of: model.name), bench.input.batch)
            let (threads, runs) = (bench.threads.threads, bench.timing.runs)
            let net = try model.load(size: size, route: route, threads: threads)
            let macs = net.graph.macs(shapes: try net.graph.shapes(n: batch, h: size, w: size))
            try net.checkMemory(batch: batch, size: size)
            let input = Benchmark.randomInput(batch: batch, size: size)
            let times = try measure(net, input).map { $0 * 1000 }
            if profile {
                printProfile(net, try Benchmark.profile(net, input, runs: runs, threads: threads), macs: macs)
            }
            let median = Benchmark.median(times)
            let gflops = 2 * Double(macs.reduce(0, +)) / (median / 1000) / 1e9
            let fp32 = try fp32Median(size: size, input: input, route: route)
            if bench.json {
                var report: [String: Any] = [
                    "model": name.rawValue, "batch": batch, "input_size": size, "threads": threads, "runs": runs,
                    "median_ms": median, "min_ms": times.min()!, "max_ms": times.max()!, "gflops": gflops,
                    "macs": macs.reduce(0, +), "peak_rss_mb": Benchmark.peakResidentMegabytes(),
                    "isa": Kernels.current.name, "precision": route.precision.rawValue,
                    "route": route.name, "amx": ReducedKernels.current.amx.map { "\($0)" } ?? NSNull(),
                    "explain": explain?.rawValue ?? NSNull(),
                ]
                if let fp32 { report["fp32_median_ms"] = fp32 }
                if bench.allTimes { report["times_ms"] = times }
                try printJSON(report)
            } else {
                let line = "%@ batch %d at %d×%d, %d threads, %@ kernels, %@ (%@): median %.1f ms "
                    + "(min %.1f, max %.1f) over %d runs, %.1f GFLOP/s, peak RSS %.0f MB"
                print(String(format: line,
                             name.rawValue, batch, size, size, threads, Kernels.current.name,
                             route.precision.rawValue, route.name, median,
                             times.min()!, times.max()!, runs, gflops, Benchmark.peakResidentMegabytes()))
                if let fp32, fp32 < median {
                    print(String(format: "bf16 by %@ is %.2f× slower than fp32 on this CPU (fp32: median %.1f "
                                 + "ms, same run): use fp32 here", route.name, median / fp32, fp32))
                }
            }
        }
    }

    /// Seconds per forward pass, or per explanation with `--explain`.
    func measure(_ net: InceptionModel, _ input: Tensor) throws -> [Double] {
        let (warmup, runs) = (bench.timing.warmup, bench.timing.runs)
        if let explain {
            return try Benchmark.explain(net, input, method: explain, warmup: warmup, runs: runs,
                                         threads: bench.threads.threads)
        }
        return try Benchmark.forward(net, input, warmup: warmup, runs: runs, threads: bench.threads.threads)
    }

    /// With bf16 on the AVX512-BF16 route, fp32's median time of the same model and input, timed next (nil
    /// otherwise): on some cores VDPBF16PS runs at half the fp32 FMA rate (the Xeon in docs/performance.md),
    /// and there bf16 is slower than fp32, which the user should hear from the benchmark.
    func fp32Median(size: Int, input: Tensor, route: PrecisionRoute) throws -> Double? {
        guard route.precision == .bf16 && route.kernels.amx == nil else { return nil }
        let net = try model.load(size: size, route: .fp32, threads: bench.threads.threads)
        let times = try Benchmark.forward(net, input, warmup: bench.timing.warmup, runs: bench.timing.runs,
                                          threads: bench.threads.threads)
        return Benchmark.median(times) * 1000
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
