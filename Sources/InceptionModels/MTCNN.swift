import InceptionEngine

/// MTCNN's three networks (Zhang et al. 2016, "Joint Face Detection and Alignment using Multi-task Cascaded
/// Convolutional Networks") as facenet-pytorch defines them, with the parameter names of its `pnet.pt`, `rnet.pt`
/// and `onet.pt`. Each network's heads are concatenated into one output, in this channel order:
/// the face probability (softmax: not a face, a face), the box regression (x1, y1, x2, y2), and O-Net's five
/// landmarks (five x, then five y).
package enum MTCNN {
    /// P-Net, fully convolutional: one 12 × 12 window per output pixel, at stride 2. Output: 6 channels.
    package static func proposal() -> Graph {
        let b = GraphBuilder()
        var x = b.input(channels: 3)
        x = x.layer("conv1", 10, 3, prelu: "prelu1").maxPool(2, stride: 2, ceilMode: true, name: "pool1")
        x = x.layer("conv2", 16, 3, prelu: "prelu2").layer("conv3", 32, 3, prelu: "prelu3")
        let probability = x.layer("conv4_1", 2, 1).softmax("softmax4_1")
        return b.finish(output: concat(probability, x.layer("conv4_2", 4, 1)))
    }

    /// R-Net on 24 × 24 crops. Output: `[n, 6]`.
    package static func refinement() -> Graph {
        let b = GraphBuilder()
        var x = b.input(channels: 3)
        x = x.layer("conv1", 28, 3, prelu: "prelu1").maxPool(3, stride: 2, ceilMode: true, name: "pool1")
        x = x.layer("conv2", 48, 3, prelu: "prelu2").maxPool(3, stride: 2, ceilMode: true, name: "pool2")
        x = x.layer("conv3", 64, 2, prelu: "prelu3")
        x = x.layer("dense4", 128, 3, prelu: "prelu4")
        let probability = x.linear("dense5_1", 2).softmax("softmax5_1")
        return b.finish(output: concat(probability, x.linear("dense5_2", 4)))
    }

    /// O-Net on 48 × 48 crops. Output: `[n, 16]`.
    package static func output() -> Graph {
        let b = GraphBuilder()
        var x = b.input(channels: 3)
        x = x.layer("conv1", 32, 3, prelu: "prelu1").maxPool(3, stride: 2, ceilMode: true, name: "pool1")
        x = x.layer("conv2", 64, 3, prelu: "prelu2").maxPool(3, stride: 2, ceilMode: true, name: "pool2")
        x = x.layer("conv3", 64, 3, prelu: "prelu3").maxPool(2, stride: 2, ceilMode: true, name: "pool3")
        x = x.layer("conv4", 128, 2, prelu: "prelu4")
        x = x.layer("dense5", 256, 3, prelu: "prelu5")
        let probability = x.linear("dense6_1", 2).softmax("softmax6_1")
        return b.finish(output: concat(probability, x.linear("dense6_2", 4), x.linear("dense6_3", 10)))
    }

    /// The layers whose checkpoint weight is a dense layer's (`[out, side · side · channels]`) but that run here as a
    /// `side × side` convolution over the last map: R-Net's `dense4` and O-Net's `dense5`.
    package static let denseOverMap: Set<String> = ["dense4.weight", "dense5.weight"]

    /// A dense layer's weights, which facenet-pytorch applies after `permute(0, 3, 2, 1)` (so its input index is
    /// (x · side + y) · channels + c), as the OIHW weights of the convolution that computes the same sums.
    package static func convolutionWeights(dense: [Float], outFeatures: Int, channels: Int, side: Int) -> [Float] {
        precondition(dense.count == outFeatures * side * side * channels)
        var out = [Float](repeating: 0, count: dense.count)
        for o in 0..<outFeatures {
            for c in 0..<channels {
                for y in 0..<side {
                    for x in 0..<side {
                        out[((o * channels + c) * side + y) * side + x] =
                            dense[o * side * side * channels + (x * side + y) * channels + c]
                    }
                }
            }
        }
        return out
    }
}

extension Value {
    /// A convolution with bias (no padding, stride 1), then the PReLU named `prelu` where one follows.
    fileprivate func layer(_ name: String, _ outChannels: Int, _ kernel: Int, prelu: String? = nil) -> Value {
        let y = convolution(name, outChannels, kernel: (kernel, kernel), bias: true, batchNorm: nil,
                            activation: .identity)
        return prelu.map { y.prelu($0) } ?? y
    }
}
