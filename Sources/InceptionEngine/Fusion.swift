/// The fusion rule both executors apply — inference (`CompiledGraph`) and training (`TrainingGraph`) — so that they
/// cannot come to disagree.
extension Graph {
    /// Residual nodes that run as their branch convolution, by branch: `act(x + s · conv(y))` computed by the
    /// convolution with `s` folded into its weights and the shortcut `x` added as each tile is stored, the
    /// convolution's own output never written. The branch must be a convolution without an activation of its own,
    /// read by nothing else (and not also the shortcut). Inference folds BatchNorm into the convolution first, so a
    /// branch with BatchNorm fuses there (`batchNormFolded`); training normalises the convolution's output with the
    /// batch's statistics, which the epilogue cannot, so there it does not. `included`: the nodes that run (training
    /// runs only those its outputs need).
    func residualFusions(batchNormFolded: Bool, included: (Int) -> Bool = { _ in true }) -> [Int: Int] {
        var readers = [Int](repeating: 0, count: nodes.count)
        for i in nodes.indices where included(i) { for j in nodes[i].inputs { readers[j] += 1 } }
        var residualOf: [Int: Int] = [:]
        for (i, node) in nodes.enumerated() where included(i) {
            guard case .residual = node.operation, case let branch = node.inputs[1], branch != node.inputs[0],
                  readers[branch] == 1, case let .convolution(_, p, .identity) = nodes[branch].operation,
                  batchNormFolded || p.batchNorm == nil else { continue }
            residualOf[branch] = i
        }
        return residualOf
    }
}
