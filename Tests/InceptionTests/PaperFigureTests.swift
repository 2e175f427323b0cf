import Inception
import InceptionReferences
import InceptionTestSupport
import Testing

/// The networks drawn as the paper draws them: each stage's output size at 299×299 and each block's repeat count,
/// against the figures of arXiv 1602.07261 — Figures 3 and 9 (Inception-v4 and its stem), 14 and 15
/// (Inception-ResNet-v1's stem and the schema both Inception-ResNets share: 5 × A, 10 × B, 5 × C) and Table 1 (the
/// Reduction-A widths k, l, m, n, which make its output 17×17 × (input + n + m)). The two paper-only networks have no
/// released weights to check against, so the figures are their reference.
@Suite struct PaperFigureTests {
    /// (stage, how many consecutive blocks of it, output height = width, channels), in order, as the figures give
    /// them; the stem's steps named as the released checkpoints name them.
    static let figures: [ModelName: [(String, Int, Int, Int)]] = [
        .inceptionV4: [
            ("conv2d_1a", 1, 149, 32), ("conv2d_2a", 1, 147, 32), ("conv2d_2b", 1, 147, 64), ("mixed_3a", 1, 73, 160),
            ("mixed_4a", 1, 71, 192), ("mixed_5a", 1, 35, 384), ("inception_a", 4, 35, 384),
            ("reduction_a", 1, 17, 1024), ("inception_b", 7, 17, 1024), ("reduction_b", 1, 8, 1536),
            ("inception_c", 3, 8, 1536), ("global_pool", 1, 1, 1536),
        ],
        // Figure 14's stem (ending 35×35×256); Table 1: k, l, m, n = 192, 192, 256, 384.
        .inceptionResNetV1: [
            ("conv2d_1a", 1, 149, 32), ("conv2d_2a", 1, 147, 32), ("conv2d_2b", 1, 147, 64), ("maxpool_3a", 1, 73, 64),
            ("conv2d_3b", 1, 73, 80), ("conv2d_4a", 1, 71, 192), ("conv2d_4b", 1, 35, 256),
            ("inception_resnet_a", 5, 35, 256), ("reduction_a", 1, 17, 896), ("inception_resnet_b", 10, 17, 896),
            ("reduction_b", 1, 8, 1792), ("inception_resnet_c", 5, 8, 1792), ("global_pool", 1, 1, 1792),
        ],
        // Figure 3's stem (Inception-v4's, ending 35×35×384); Table 1: k, l, m, n = 256, 256, 384, 384.
        .inceptionResNetV2Paper: [
            ("conv2d_1a", 1, 149, 32), ("conv2d_2a", 1, 147, 32), ("conv2d_2b", 1, 147, 64), ("mixed_3a", 1, 73, 160),
            ("mixed_4a", 1, 71, 192), ("mixed_5a", 1, 35, 384), ("inception_resnet_a", 5, 35, 384),
            ("reduction_a", 1, 17, 1152), ("inception_resnet_b", 10, 17, 1152), ("reduction_b", 1, 8, 2144),
            ("inception_resnet_c", 5, 8, 2144), ("global_pool", 1, 1, 2144),
        ],
    ]

    @Test(arguments: [ModelName.inceptionV4, .inceptionResNetV1, .inceptionResNetV2Paper])
    func stagesAreTheFigures(_ name: ModelName) throws {
        let graph = name.graph()
        let shapes = try graph.shapes(n: 1, h: 299, w: 299)
        // Consecutive nodes of one stage make one row; "inception_a.3" counts as the fourth block of "inception_a".
        var rows: [(stage: String, blocks: Set<String>, size: Int, channels: Int)] = []
        for i in graph.nodes.indices.dropFirst() {
            let stage = graph.nodes[i].stage
            let group = stage.split(separator: ".").first.map(String.init) ?? stage
            #expect(shapes[i].h == shapes[i].w)
            if rows.last?.stage == group {
                rows[rows.count - 1].blocks.insert(stage)
                (rows[rows.count - 1].size, rows[rows.count - 1].channels) = (shapes[i].h, shapes[i].c)
            } else {
                rows.append((group, [stage], shapes[i].h, shapes[i].c))
            }
        }
        let drawn = rows.prefix { $0.stage != "dropout" && $0.stage != "classifier" }
            .map { "\($0.stage) ×\($0.blocks.count): \($0.size)×\($0.size)×\($0.channels)" }
        let figure = Self.figures[name]!.map { "\($0.0) ×\($0.1): \($0.2)×\($0.2)×\($0.3)" }
        #expect(drawn == figure)
        #expect(graph.nodes[graph.outputs["logits"]!].channels == 1000)
    }
}
