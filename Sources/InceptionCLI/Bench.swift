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

    func validate() throws {
        guard batch >= 1, runs >= 1, warmup >= 0 else { throw ValidationError("--batch and --runs must be at least 1") }
    }

    func run() throws {
        try reportingErrors {
            let name = model.model
            let net = InceptionModel(name, randomSeed: 1)
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
