import InceptionEngine

/// Inception-ResNet-v1 and Inception-ResNet-v2 — C. Szegedy, S. Ioffe, V. Vanhoucke, A. Alemi, "Inception-v4,
/// Inception-ResNet and the Impact of Residual Connections on Learning", arXiv:1602.07261 (AAAI 2017),
/// Figure 15 (the schema shared by both), with each network's stem and blocks.
///
/// One definition builds four networks; what differs between them is data (`Configuration`):
///  * `v2` — the released TF-slim network (timm `inception_resnet_v2`), which is not the paper's: an
///    Inception-v3-like stem ending in Mixed_5b, 10/20/10 blocks (the last one unscaled, without ReLU) and an
///    extra 1×1 convolution to 1536 channels before pooling.
///  * `v2Paper` — Figures 3, 16, 7, 17, 18, 19 exactly, 5/10/5 blocks.
///  * `v1Paper` — Figures 14, 10, 7, 11, 12, 13, 5/10/5 blocks, 1000-way classifier.
///  * `v1FaceNet` — facenet's network (facenet-pytorch `InceptionResnetV1`): the v1 trunk plus a sixth,
///    unscaled C block without ReLU, and a 512-d bottleneck with BatchNorm, L2-normalised.
package enum InceptionResNet {
    package enum Stem: Sendable {
        /// Figure 3, the stem of Inception-v4 and (in the paper) of Inception-ResNet-v2: 35×35×384.
        case inceptionV4
        /// Figure 14, the stem of Inception-ResNet-v1: 35×35×256.
        case inceptionResNetV1
        /// The released TF-slim Inception-ResNet-v2 stem, ending in the Inception-v3-style Mixed_5b: 35×35×320.
        case tfSlimV2
    }

    /// Figures 10 and 16: widths of the three branches of Inception-ResNet-A.
    package struct WidthsA: Sendable { package var b0: Int, b1: (Int, Int), b2: (Int, Int, Int) }
    /// Figures 11 and 17 (Inception-ResNet-B, 1×7 then 7×1), and 13 and 19 (Inception-ResNet-C, 1×3 then 3×1).
    package struct WidthsBC: Sendable { package var b0: Int, b1: (Int, Int, Int) }
    /// Figures 12 and 18: Reduction-B's three convolution branches.
    package struct WidthsReductionB: Sendable { package var b0: (Int, Int), b1: (Int, Int), b2: (Int, Int, Int) }

    package enum Head: Sendable {
        /// Figure 15: average pool → dropout → fully connected → softmax.
        case classifier(classes: Int, dropout: Float)
        /// facenet: average pool → dropout → bottleneck (no bias) → BatchNorm → L2 normalisation; with `classes`,
        /// also a classifier on the BatchNorm output (facenet-pytorch's `logits`).
        case faceEmbedding(dimension: Int, dropout: Float, classes: Int?)
    }

    package struct Configuration: Sendable {
        package var stem: Stem
        package var a: WidthsA
        package var reductionA: ReductionAFilters
        package var b: WidthsBC
        package var reductionB: WidthsReductionB
        package var c: WidthsBC
        package var repeats: (a: Int, b: Int, c: Int)
        /// Residual scales (§3.3: "between 0.1 and 0.3").
        package var scales: (a: Float, b: Float, c: Float)
        /// An extra C block with scale 1.0 and no ReLU after the sum (TF-slim and facenet).
        package var unscaledLastBlock: Bool
        /// TF-slim's Conv2d_7b_1x1 before pooling.
        package var finalConvolution: Int?
        package var head: Head
        /// TF-slim's auxiliary classifier on the 17×17 map after the B blocks (`auxiliaryHead(_:classes:)`), for
        /// training with a classifier head; not in released checkpoints.
        package var auxiliaryHead = false

        /// timm `inception_resnet_v2` (TF-slim release): 55,843,464 parameters.
        package static let v2 = Configuration(
            stem: .tfSlimV2, a: WidthsA(b0: 32, b1: (32, 32), b2: (32, 48, 64)),
            reductionA: ReductionAFilters(k: 256, l: 256, m: 384, n: 384),
            b: WidthsBC(b0: 192, b1: (128, 160, 192)),
            reductionB: WidthsReductionB(b0: (256, 384), b1: (256, 288), b2: (256, 288, 320)),
            c: WidthsBC(b0: 192, b1: (192, 224, 256)),
            repeats: (10, 20, 9), scales: (0.17, 0.10, 0.20), unscaledLastBlock: true, finalConvolution: 1536,
            head: .classifier(classes: 1000, dropout: 0.2))

        /// The paper's Inception-ResNet-v2 (Figures 3, 16, 7, 17, 18, 19; 5 × A, 10 × B, 5 × C). The branch widths
        /// are the figures'; each 1×1 "Linear" up-projection takes the width of the trunk it is added to (384,
        /// 1152, 2144), the only reading under which the sums are defined — Figures 17 and 19 print 1154 and 2048.
        /// Residual scales 0.17 / 0.10 / 0.20, the values the authors' released code uses, inside §3.3's range.
        package static let v2Paper = Configuration(
            stem: .inceptionV4, a: v2.a, reductionA: v2.reductionA, b: v2.b, reductionB: v2.reductionB, c: v2.c,
            repeats: (5, 10, 5), scales: (0.17, 0.10, 0.20), unscaledLastBlock: false, finalConvolution: nil,
            head: .classifier(classes: 1000, dropout: 0.2))

        /// The paper's Inception-ResNet-v1 (Figures 14, 10, 7, 11, 12, 13; 5 × A, 10 × B, 5 × C), 1000 classes,
        /// residual scales 0.17 / 0.10 / 0.20 as in facenet.
        package static let v1Paper = Configuration(
            stem: .inceptionResNetV1, a: WidthsA(b0: 32, b1: (32, 32), b2: (32, 32, 32)),
            reductionA: ReductionAFilters(k: 192, l: 192, m: 256, n: 384),
            b: WidthsBC(b0: 128, b1: (128, 128, 128)),
            reductionB: WidthsReductionB(b0: (256, 384), b1: (256, 256), b2: (256, 256, 256)),
            c: WidthsBC(b0: 192, b1: (192, 192, 192)),
            repeats: (5, 10, 5), scales: (0.17, 0.10, 0.20), unscaledLastBlock: false, finalConvolution: nil,
            head: .classifier(classes: 1000, dropout: 0.2))

        /// facenet-pytorch 2.6 `InceptionResnetV1`: 512-d embedding; `classes` 8631 (VGGFace2) or 10575
        /// (CASIA-WebFace) when the checkpoint has `logits`.
        package static func v1FaceNet(classes: Int?) -> Configuration {
            var config = v1Paper
            config.unscaledLastBlock = true
            config.head = .faceEmbedding(dimension: 512, dropout: 0.6, classes: classes)
            return config
        }
    }

    /// Outputs: `features` (pooled), and `logits` and/or `embedding` by head; `aux_logits` with the auxiliary head.
    package static func graph(_ config: Configuration) -> Graph {
        let g = GraphBuilder()
        var x = stem(g.input(channels: 3), config.stem)
        for i in 0..<config.repeats.a {
            x = x.scope("inception_resnet_a.\(i)") { inceptionResNetA($0, config.a, scale: config.scales.a) }
        }
        x = x.scope("reduction_a") { reductionA($0, config.reductionA) }
        for i in 0..<config.repeats.b {
            x = x.scope("inception_resnet_b.\(i)") { inceptionResNetB($0, config.b, scale: config.scales.b) }
        }
        var aux: Value? = nil
        if config.auxiliaryHead, case let .classifier(classes, _) = config.head {
            aux = x.scope(OutputName.auxLogits.rawValue) { auxiliaryHead($0, classes: classes) }
        }
        x = x.scope("reduction_b") { reductionB($0, config.reductionB) }
        for i in 0..<config.repeats.c {
            x = x.scope("inception_resnet_c.\(i)") { inceptionResNetC($0, config.c, scale: config.scales.c) }
        }
        if config.unscaledLastBlock {
            x = x.scope("inception_resnet_c_last") { inceptionResNetC($0, config.c, scale: 1, activation: .identity) }
        }
        if let width = config.finalConvolution { x = x.basicConv("conv2d_7b", width, 1) }
        let features = x.globalAveragePool()
        switch config.head {
        case let .classifier(classes, dropout):
            let logits = features.dropout(dropout).linear("classifier", classes)
            var outputs: [OutputName: Value] = [.features: features, .logits: logits]
            outputs[.auxLogits] = aux
            return g.finish(outputs: outputs, primary: .logits)
        case let .faceEmbedding(dimension, dropout, classes):
            let bottleneck = features.dropout(dropout).linear("bottleneck", dimension, bias: false)
                .batchNorm("bottleneck_bn")
            var outputs: [OutputName: Value] = [.features: features, .embedding: bottleneck.l2Normalize()]
            if let classes { outputs[.logits] = bottleneck.linear(OutputName.logits.rawValue, classes) }
            return g.finish(outputs: outputs, primary: .embedding)
        }
    }

    package static func stem(_ input: Value, _ stem: Stem) -> Value {
        switch stem {
        case .inceptionV4:
            return InceptionV4.stem(input)
        case .inceptionResNetV1:  // Figure 14
            return input
                .basicConv("conv2d_1a", 32, 3, stride: 2)  // 149×149×32
                .basicConv("conv2d_2a", 32, 3)  // 147×147×32
                .basicConv("conv2d_2b", 64, 3, .same)  // 147×147×64
                .maxPool(3, stride: 2, name: "maxpool_3a")  // 73×73×64
                .basicConv("conv2d_3b", 80, 1)  // 73×73×80
                .basicConv("conv2d_4a", 192, 3)  // 71×71×192
                .basicConv("conv2d_4b", 256, 3, stride: 2)  // 35×35×256
        case .tfSlimV2:
            return input
                .basicConv("conv2d_1a", 32, 3, stride: 2)  // 149×149×32
                .basicConv("conv2d_2a", 32, 3)  // 147×147×32
                .basicConv("conv2d_2b", 64, 3, .same)  // 147×147×64
                .maxPool(3, stride: 2, name: "maxpool_3a")  // 73×73×64
                .basicConv("conv2d_3b", 80, 1)  // 73×73×80
                .basicConv("conv2d_4a", 192, 3)  // 71×71×192
                .maxPool(3, stride: 2, name: "maxpool_5a")  // 35×35×192
                .scope("mixed_5b", mixed5b)  // 35×35×320
        }
    }

    /// TF-slim's Mixed_5b (an Inception-v3 block, not in the paper): 35×35×192 → 35×35×320.
    package static func mixed5b(_ x: Value) -> Value {
        concat(
            x.basicConv("branch0", 96, 1),
            x.basicConv("branch1.0", 48, 1)
                .basicConv("branch1.1", 64, 5, .same),
            x.basicConv("branch2.0", 64, 1)
                .basicConv("branch2.1", 96, 3, .same)
                .basicConv("branch2.2", 96, 3, .same),
            x.averagePool(3, stride: 1, padding: 1, name: "branch3.0")
                .basicConv("branch3.1", 64, 1))
    }

    /// Figures 10 (v1) and 16 (v2) — Inception-ResNet-A, 35×35.
    package static func inceptionResNetA(_ x: Value, _ w: WidthsA, scale: Float,
                                        activation: Activation = .relu) -> Value {
        let branches = concat(
            x.basicConv("branch0", w.b0, 1),
            x.basicConv("branch1.0", w.b1.0, 1)
                .basicConv("branch1.1", w.b1.1, 3, .same),
            x.basicConv("branch2.0", w.b2.0, 1)
                .basicConv("branch2.1", w.b2.1, 3, .same)
                .basicConv("branch2.2", w.b2.2, 3, .same))
        return x.residual(branches.linearConv("conv2d", x.channels), scale: scale, activation: activation)
    }

    /// Figures 11 (v1) and 17 (v2) — Inception-ResNet-B, 17×17.
    package static func inceptionResNetB(_ x: Value, _ w: WidthsBC, scale: Float,
                                        activation: Activation = .relu) -> Value {
        let branches = concat(
            x.basicConv("branch0", w.b0, 1),
            x.basicConv("branch1.0", w.b1.0, 1)
                .basicConv("branch1.1", w.b1.1, (1, 7), .same)
                .basicConv("branch1.2", w.b1.2, (7, 1), .same))
        return x.residual(branches.linearConv("conv2d", x.channels), scale: scale, activation: activation)
    }

    /// Figures 13 (v1) and 19 (v2) — Inception-ResNet-C, 8×8.
    package static func inceptionResNetC(_ x: Value, _ w: WidthsBC, scale: Float,
                                        activation: Activation = .relu) -> Value {
        let branches = concat(
            x.basicConv("branch0", w.b0, 1),
            x.basicConv("branch1.0", w.b1.0, 1)
                .basicConv("branch1.1", w.b1.1, (1, 3), .same)
                .basicConv("branch1.2", w.b1.2, (3, 1), .same))
        return x.residual(branches.linearConv("conv2d", x.channels), scale: scale, activation: activation)
    }

    /// Figures 12 (v1) and 18 (v2) — Reduction-B, 17×17 → 8×8.
    package static func reductionB(_ x: Value, _ w: WidthsReductionB) -> Value {
        concat(
            x.basicConv("branch0.0", w.b0.0, 1)
                .basicConv("branch0.1", w.b0.1, 3, stride: 2),
            x.basicConv("branch1.0", w.b1.0, 1)
                .basicConv("branch1.1", w.b1.1, 3, stride: 2),
            x.basicConv("branch2.0", w.b2.0, 1)
                .basicConv("branch2.1", w.b2.1, 3, .same)
                .basicConv("branch2.2", w.b2.2, 3, stride: 2),
            x.maxPool(3, stride: 2, name: "branch3"))
    }
}
