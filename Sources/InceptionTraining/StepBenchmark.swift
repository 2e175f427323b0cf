import Foundation
import Inception
import InceptionEngine

/// The times of training steps, as `inception bench train` reports them.
public struct TrainingStepTimes: Sendable {
    /// Each timed step, forward and backward and the optimiser, in seconds.
    public var steps: [Double] = []
    /// The optimiser's part of each step, in seconds.
    public var optimizer: [Double] = []
    /// With profiling: seconds per layer kind and direction ("conv 3×3/1+BN forward"), one sample per step.
    public var byKind: [String: [Double]] = [:]
}

extension Benchmark {
    /// `warmup` untimed then `runs` timed training steps of `graph` from a fresh initialisation, on a random batch:
    /// forward and backward on batch statistics with label-smoothed cross-entropy (and the auxiliary head's loss
    /// weighted 0.4 if the graph has one), then the paper's RMSProp update.
    package static func trainingSteps(_ graph: Graph, batch: Int, size: Int, warmup: Int, runs: Int, threads: Int,
                                     profile: Bool) throws -> TrainingStepTimes {
        let trainer = TrainingGraph(graph: graph, values: ModelName.initialValues(graph, seed: 1))
        let optimizer = Optimizer(.paper, parameters: graph.parameters)
        let output: OutputName = graph.outputs[.logits] != nil ? .logits : graph.outputs.keys.sorted()[0]
        let classes = graph.nodes[graph.outputs[output]!].channels
        let auxiliary = graph.outputs[.auxLogits] != nil ? (OutputName.auxLogits, Float(0.4)) : nil
        var rng = SplitMix64(7)
        try TrainingGraph.checkMemory(graph, batch: batch, size: size)
        let input = Tensor(shape: [batch, size, size, 3],
                           scalars: (0..<(batch * size * size * 3)).map { _ in rng.uniform(-1, 1) })
        let labels = (0..<batch).map { _ in Int(rng.next() % UInt64(classes)) }
        var times = TrainingStepTimes()
        for run in 0..<(warmup + runs) {
            let timed = run >= warmup
            var nodeTimes: [String: Double] = [:]
            if profile && timed {
                trainer.timer = { node, backward, seconds in
                    nodeTimes[graph.kind(of: node, batchNorm: true) + (backward ? " backward" : " forward"),
                              default: 0] += seconds
                }
            }
            let forwardAndBackward = try seconds {
                _ = try trainer.step(input, labels: labels, labelSmoothing: 0.1, output: output, auxiliary: auxiliary,
                                     threads: threads)
            }
            let update = seconds { optimizer.step(&trainer.values, gradients: trainer.gradients, learningRate: 0.045) }
            trainer.timer = nil
            guard timed else { continue }
            times.steps.append(forwardAndBackward + update)
            times.optimizer.append(update)
            for (kind, t) in nodeTimes { times.byKind[kind, default: []].append(t) }
        }
        return times
    }
}
