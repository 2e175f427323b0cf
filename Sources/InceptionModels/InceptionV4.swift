import InceptionEngine

/// Inception-v4 — C. Szegedy, S. Ioffe, V. Vanhoucke, A. Alemi, "Inception-v4, Inception-ResNet and the Impact
/// of Residual Connections on Learning", arXiv:1602.07261 (AAAI 2017), Figure 9.
///
/// The released TF-slim checkpoint (timm `inception_v4`) is exactly the paper's network, so one definition
/// serves both. Each block is one function whose lines are the boxes of its figure, branches in the
/// concatenation order of the checkpoint.
package enum InceptionV4 {
    package struct Configuration: Sendable {
        /// Table 1: the Reduction-A filter counts (k, l, m, n).
        package var reductionA = ReductionAFilters(k: 192, l: 224, m: 256, n: 384)
        /// Figure 9: 4 × Inception-A, 7 × Inception-B, 3 × Inception-C.
        package var repeats = (a: 4, b: 7, c: 3)
        package var classes = 1000
        /// Figure 9: "Dropout (keep 0.8)" before the classifier; inactive at inference.
        package var dropout: Float = 0.2
        /// TF-slim's auxiliary classifier on the 17×17 map (`auxiliaryHead`), for training; not in released
        /// checkpoints.
        package var auxiliaryHead = false

        package init() {}
    }

    /// Outputs: `logits`, and `features` (the pooled 1536-d vector before the classifier); `aux_logits` with the
    /// auxiliary head.
    package static func graph(_ config: Configuration = Configuration()) -> Graph {
        let g = GraphBuilder()
        var x = stem(g.input(channels: 3))
        for i in 0..<config.repeats.a { x = x.scope("inception_a.\(i)", inceptionA) }
        x = x.scope("reduction_a") { reductionA($0, config.reductionA) }
        for i in 0..<config.repeats.b { x = x.scope("inception_b.\(i)", inceptionB) }
        let aux = config.auxiliaryHead
            ? x.scope(OutputName.auxLogits.rawValue) { auxiliaryHead($0, classes: config.classes) } : nil
        x = x.scope("reduction_b", reductionB)
        for i in 0..<config.repeats.c { x = x.scope("inception_c.\(i)", inceptionC) }
        let features = x.globalAveragePool()
        let logits = features.dropout(config.dropout).linear("classifier", config.classes)
        var outputs: [OutputName: Value] = [.features: features, .logits: logits]
        outputs[.auxLogits] = aux
        return g.finish(outputs: outputs, primary: .logits)
    }

    /// Figure 3 — the stem, 299×299×3 → 35×35×384. Each stage is a top-level scope, as TF-slim names them.
    package static func stem(_ input: Value) -> Value {
        input
            .basicConv("conv2d_1a", 32, 3, stride: 2)  // 149×149×32
            .basicConv("conv2d_2a", 32, 3)  // 147×147×32
            .basicConv("conv2d_2b", 64, 3, .same)  // 147×147×64
            .scope("mixed_3a", mixed3a)  // 73×73×160
            .scope("mixed_4a", mixed4a)  // 71×71×192
            .scope("mixed_5a", mixed5a)  // 35×35×384
    }

    /// Figure 3, first filter concatenation: 147×147×64 → 73×73×160, concatenated [max pool, conv].
    package static func mixed3a(_ x: Value) -> Value {
        concat(
            x.maxPool(3, stride: 2),
            x.basicConv("conv", 96, 3, stride: 2))
    }

    /// Figure 3, second filter concatenation: 73×73×160 → 71×71×192.
    package static func mixed4a(_ x: Value) -> Value {
        concat(
            x.basicConv("branch0.0", 64, 1)
                .basicConv("branch0.1", 96, 3),
            x.basicConv("branch1.0", 64, 1)
                .basicConv("branch1.1", 64, (1, 7), .same)
                .basicConv("branch1.2", 64, (7, 1), .same)
                .basicConv("branch1.3", 96, 3))
    }

    /// Figure 3, third filter concatenation: 71×71×192 → 35×35×384, concatenated [conv, max pool] (the
    /// opposite order to Mixed_3a, as the checkpoint has it).
    package static func mixed5a(_ x: Value) -> Value {
        concat(
            x.basicConv("conv", 192, 3, stride: 2),
            x.maxPool(3, stride: 2))
    }

    /// Figure 4 — Inception-A, 35×35×384 → 35×35×384.
    package static func inceptionA(_ x: Value) -> Value {
        concat(
            x.basicConv("branch0", 96, 1),
            x.basicConv("branch1.0", 64, 1)
                .basicConv("branch1.1", 96, 3, .same),
            x.basicConv("branch2.0", 64, 1)
                .basicConv("branch2.1", 96, 3, .same)
                .basicConv("branch2.2", 96, 3, .same),
            x.averagePool(3, stride: 1, padding: 1, name: "branch3.0")
                .basicConv("branch3.1", 96, 1))
    }

    /// Figure 5 — Inception-B, 17×17×1024 → 17×17×1024.
    package static func inceptionB(_ x: Value) -> Value {
        concat(
            x.basicConv("branch0", 384, 1),
            x.basicConv("branch1.0", 192, 1)
                .basicConv("branch1.1", 224, (1, 7), .same)
                .basicConv("branch1.2", 256, (7, 1), .same),
            x.basicConv("branch2.0", 192, 1)
                .basicConv("branch2.1", 192, (7, 1), .same)
                .basicConv("branch2.2", 224, (1, 7), .same)
                .basicConv("branch2.3", 224, (7, 1), .same)
                .basicConv("branch2.4", 256, (1, 7), .same),
            x.averagePool(3, stride: 1, padding: 1, name: "branch3.0")
                .basicConv("branch3.1", 128, 1))
    }

    /// Figure 8 — Reduction-B of Inception-v4, 17×17×1024 → 8×8×1536.
    package static func reductionB(_ x: Value) -> Value {
        concat(
            x.basicConv("branch0.0", 192, 1)
                .basicConv("branch0.1", 192, 3, stride: 2),
            x.basicConv("branch1.0", 256, 1)
                .basicConv("branch1.1", 256, (1, 7), .same)
                .basicConv("branch1.2", 320, (7, 1), .same)
                .basicConv("branch1.3", 320, 3, stride: 2),
            x.maxPool(3, stride: 2, name: "branch2"))
    }

    /// Figure 6 — Inception-C, 8×8×1536 → 8×8×1536. The two split branches end in a 1×3 and a 3×1
    /// convolution side by side, concatenated [1×3, 3×1] (timm's flat names `branch1_1a`, `branch1_1b`, …).
    package static func inceptionC(_ x: Value) -> Value {
        let b1 = x.basicConv("branch1_0", 384, 1)
        let b2 = x.basicConv("branch2_0", 384, 1)
            .basicConv("branch2_1", 448, (3, 1), .same)
            .basicConv("branch2_2", 512, (1, 3), .same)
        return concat(
            x.basicConv("branch0", 256, 1),
            concat(
                b1.basicConv("branch1_1a", 256, (1, 3), .same),
                b1.basicConv("branch1_1b", 256, (3, 1), .same)),
            concat(
                b2.basicConv("branch2_3a", 256, (1, 3), .same),
                b2.basicConv("branch2_3b", 256, (3, 1), .same)),
            x.averagePool(3, stride: 1, padding: 1, name: "branch3.0")
                .basicConv("branch3.1", 256, 1))
    }
}

/// TF-slim's auxiliary classifier (not in the paper's figures; `AuxLogits` in `inception_v4.py` and
/// `inception_resnet_v2.py`), on the 17×17 map after the B blocks: average pool 5×5 stride 3 (valid) → 5×5, a 1×1
/// convolution to 128, a 5×5 valid convolution to 768 → 1×1, a fully connected layer. Its loss is added to the main
/// one with weight 0.4 in training; inference never uses it. Module names are torchvision's `InceptionAux`.
package func auxiliaryHead(_ x: Value, classes: Int) -> Value {
    x.averagePool(5, stride: 3, padding: 0, name: "pool")  // 5×5
        .basicConv("conv0", 128, 1)
        .basicConv("conv1", 768, 5)  // 1×1×768
        .linear("fc", classes)
}

/// Table 1 of the paper: the filter counts of Reduction-A (Figure 7) in each network.
package struct ReductionAFilters: Sendable, Hashable {
    package var k: Int, l: Int, m: Int, n: Int
    package init(k: Int, l: Int, m: Int, n: Int) { (self.k, self.l, self.m, self.n) = (k, l, m, n) }
}

/// Figure 7 — Reduction-A, 35×35 → 17×17, shared by all three networks with their own (k, l, m, n).
package func reductionA(_ x: Value, _ f: ReductionAFilters) -> Value {
    concat(
        x.basicConv("branch0", f.n, 3, stride: 2),
        x.basicConv("branch1.0", f.k, 1)
            .basicConv("branch1.1", f.l, 3, .same)
            .basicConv("branch1.2", f.m, 3, stride: 2),
        x.maxPool(3, stride: 2, name: "branch2"))
}
