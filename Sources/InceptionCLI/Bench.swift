import ArgumentParser
import Foundation
import Inception

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

    @Flag(help: "Use the implicit GEMM for every convolution (no Winograd), for comparison.")
    var direct = false

    @Flag(help: "Print time per layer kind and per stage, the GFLOP/s each reached and its share of the total.")
    var profile = false

    func validate() throws {
        guard batch >= 1, runs >= 1, warmup >= 0 else { throw ValidationError("--batch and --runs must be at least 1") }
    }

    func run() throws {
        try reportingErrors {
            let name = model.model
            let net = InceptionModel(name, randomSeed: 1, algorithms: direct ? .direct : .automatic)
            let size = inputSize ?? name.defaultInputSize
            let macs = net.graph.macs(shapes: try net.graph.shapes(n: batch, h: size, w: size)).reduce(0, +)
            var rng = SystemRandomNumberGenerator()
            let input = Tensor(shape: [batch, size, size, 3],
                               scalars: (0..<(batch * size * size * 3)).map { _ in Float.random(in: -1...1, using: &rng) })
            for _ in 0..<warmup { _ = try net.compiled.run(input, threads: threads.threads) }
            var times: [Double] = []
            for _ in 0..<runs {
                let start = DispatchTime.now().uptimeNanoseconds
                _ = try net.compiled.run(input, threads: threads.threads)
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
            }
            if profile { try printProfile(net, input, macs: net.graph.macs(shapes: try net.graph.shapes(n: batch, h: size, w: size))) }
            let unsorted = times
            times.sort()
            let median = times.count % 2 == 1 ? times[times.count / 2] : (times[times.count / 2 - 1] + times[times.count / 2]) / 2
            let gflops = 2 * Double(macs) / (median / 1000) / 1e9
            if json {
                var report: [String: Any] = [
                    "model": name.rawValue, "batch": batch, "input_size": size, "threads": threads.threads, "runs": runs,
                    "median_ms": median, "min_ms": times[0], "max_ms": times[times.count - 1], "gflops": gflops,
                    "macs": macs,
                ]
                if allTimes { report["times_ms"] = unsorted }
                try printJSON(report)
            } else {
                print(String(format: "%@ batch %d at %d×%d, %d threads: median %.1f ms (min %.1f, max %.1f) over %d runs, %.1f GFLOP/s",
                             name.rawValue, batch, size, size, threads.threads, median, times[0], times[times.count - 1],
                             runs, gflops))
            }
        }
    }
}

extension Bench {
    /// Runs the network `runs` more times with a per-node timer and prints the median time of each layer kind
    /// and of each stage.
    func printProfile(_ net: InceptionModel, _ input: Tensor, macs: [Int]) throws {
        let graph = net.graph
        var samples = [[Double]](repeating: [], count: graph.nodes.count)
        for _ in 0..<runs {
            _ = try net.compiled.run(input, threads: threads.threads) { samples[$0].append($1) }
        }
        let nodeTime = samples.map { $0.isEmpty ? 0 : $0.sorted()[$0.count / 2] }
        let total = nodeTime.reduce(0, +)
        func kind(_ i: Int) -> String {
            switch graph.nodes[i].operation {
            case let .convolution(g, _, _): return "conv \(g.kernelH)×\(g.kernelW)/\(g.strideH)"
            case .maxPool: return "max pool"
            case .averagePool: return "average pool"
            case .linear: return "linear"
            case .residual: return "residual (fused)"
            default: return "other"
            }
        }
        func table(_ title: String, _ key: (Int) -> String) {
            var order: [String] = [], time: [String: Double] = [:], work: [String: Int] = [:]
            for i in graph.nodes.indices where nodeTime[i] > 0 || macs[i] > 0 {
                let k = key(i)
                if time[k] == nil { order.append(k) }
                time[k, default: 0] += nodeTime[i]
                work[k, default: 0] += macs[i]
            }
            print(title.padding(toLength: 20, withPad: " ", startingAt: 0) + "ms".leftPadded(9) + "share".leftPadded(8)
                  + "GMAC".leftPadded(9) + "GFLOP/s".leftPadded(10))
            for k in order {
                let t = time[k]!
                let rate = t > 0 ? 2 * Double(work[k]!) / t / 1e9 : 0
                print(k.padding(toLength: 20, withPad: " ", startingAt: 0) + String(format: "%9.2f%7.1f%%%9.3f%10.1f", t * 1000,
                      100 * t / total, Double(work[k]!) / 1e9, rate))
            }
            print("")
        }
        // A residual fused into its convolution reports under the residual node: attribute it to the conv.
        table("layer kind") { i in
            if case .residual = graph.nodes[i].operation, case .convolution = graph.nodes[graph.nodes[i].inputs[1]].operation {
                return "conv 1×1/1"
            }
            return kind(i)
        }
        table("stage") { graph.nodes[$0].stage }
        print(String(format: "profiled total %.1f ms (sum of per-layer medians)\n", total * 1000))
    }
}
