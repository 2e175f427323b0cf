import InceptionEngine
import InceptionModels

/// Everything that differs between the networks, one entry per network (as timm keeps each variant in one
/// `default_cfgs` entry): how to build its graph, its input, classes, preprocessing, where its weights are and how
/// their keys are named, and its outputs. Adding a network is adding an entry (or, inside the package,
/// `ModelSpec.register`); nothing else in the library, the command line, the server or training switches on a
/// network's name.
public struct ModelSpec: Sendable {
    /// The name timm and the command line use ("inception_v4").
    public let name: String
    /// Builds the graph of a configuration (see `GraphRequest`).
    package let build: @Sendable (GraphRequest) -> Graph
    /// Classes of the default graph; nil when by default it has no classifier (the face model's embedding).
    public let classes: Int?
    /// The eval transform of its released weights; its input size is the network's.
    public let preprocessing: Preprocessing
    /// The Hub repository of its released weights (`model.safetensors`), where one exists.
    public let hubRepository: String?
    /// The network's input size: its preprocessing's.
    public var inputSize: Int { preprocessing.inputSize }
    /// Where weights come from, for `inception models`.
    public let weightsNote: String
    /// What the primary output is, for `inception models`.
    public let outputNote: String
    /// Our name of the classifier's weight (its rows are the classes).
    public let classifierWeight: String
    /// (our prefix, the released checkpoint's prefix) pairs, the first matching prefix wins; names under no prefix are
    /// the same in both. Empty for a network with no released checkpoint (it uses our names).
    public let checkpointPrefixes: @Sendable () -> [(ours: String, theirs: String)]
    /// Other published checkpoints' names, by key prefix (their prefix, the released one).
    public let checkpointAliases: [(theirs: String, released: String)]
    /// Whether its release has an auxiliary classifier (`aux_logits`), which training may add.
    public let auxiliaryHead: Bool

    package init(name: String, classes: Int?, preprocessing: Preprocessing, hubRepository: String? = nil,
                weightsNote: String, outputNote: String, classifierWeight: String = "classifier.weight",
                checkpointPrefixes: @escaping @Sendable () -> [(ours: String, theirs: String)] = { [] },
                checkpointAliases: [(theirs: String, released: String)] = [], auxiliaryHead: Bool = false,
                build: @escaping @Sendable (GraphRequest) -> Graph) {
        (self.name, self.classes, self.preprocessing) = (name, classes, preprocessing)
        self.hubRepository = hubRepository
        (self.weightsNote, self.outputNote, self.classifierWeight) = (weightsNote, outputNote, classifierWeight)
        (self.checkpointPrefixes, self.checkpointAliases) = (checkpointPrefixes, checkpointAliases)
        (self.auxiliaryHead, self.build) = (auxiliaryHead, build)
    }
}

/// What a network's graph is built for: `classes` outputs of the classifier (nil: none), `repeats` blocks in the A, B
/// and C stages (nil: the network's own), with or without TF-slim's auxiliary classifier. A future network's own
/// choice is a new field, with a default that builds what the others build.
package struct GraphRequest: Sendable {
    package var classes: Int?
    package var repeats: (Int, Int, Int)?
    package var auxiliaryHead = false

    package init(classes: Int?, repeats: (Int, Int, Int)? = nil, auxiliaryHead: Bool = false) {
        (self.classes, self.repeats, self.auxiliaryHead) = (classes, repeats, auxiliaryHead)
    }
}

extension ModelSpec {
    /// The five networks this library ships, in the order `inception models` lists them.
    static let builtIn: [ModelSpec] = [inceptionV4, inceptionResNetV2, inceptionResNetV2Paper, inceptionResNetV1,
                                       inceptionResNetV1FaceNet]

    private static let registry = Locked(builtIn)

    /// Every network known to this process: the built-in ones, then those registered.
    public static var all: [ModelSpec] { registry.withLock { $0 } }

    /// Makes `spec` known by its name (to `ModelName(rawValue:)`, and so to the command line's `--model`, checkpoint
    /// metadata and the server), replacing a registered network of the same name.
    package static func register(_ spec: ModelSpec) {
        registry.withLock { specs in
            if let i = specs.firstIndex(where: { $0.name == spec.name }) { specs[i] = spec } else { specs.append(spec) }
        }
    }

    /// Paper Figure 9 = the TF-slim release = timm `inception_v4`.
    static let inceptionV4 = ModelSpec(
        name: "inception_v4", classes: 1000, preprocessing: .inceptionV4, hubRepository: "timm/inception_v4.tf_in1k",
        weightsNote: "Hub: timm/inception_v4.tf_in1k", outputNote: "ImageNet-1k logits (1000)",
        // timm numbers the stages `features.N` in build order and calls the classifier `last_linear`.
        checkpointPrefixes: { inceptionV4Prefixes }, auxiliaryHead: true
    ) { request in
        var config = InceptionV4.Configuration()
        config.classes = request.classes!
        if let repeats = request.repeats { config.repeats = repeats }
        config.auxiliaryHead = request.auxiliaryHead
        return InceptionV4.graph(config)
    }

    /// The TF-slim release = timm `inception_resnet_v2` (not the paper's network; see `InceptionResNet`). Cadene's
    /// pretrainedmodels calls its classifier `last_linear` where timm says `classif`.
    static let inceptionResNetV2 = ModelSpec(
        name: "inception_resnet_v2", classes: 1000, preprocessing: .inceptionResNetV2,
        hubRepository: "timm/inception_resnet_v2.tf_in1k", weightsNote: "Hub: timm/inception_resnet_v2.tf_in1k",
        outputNote: "ImageNet-1k logits (1000)",
        checkpointPrefixes: {
            [("inception_resnet_a.", "repeat."), ("reduction_a.", "mixed_6a."), ("inception_resnet_b.", "repeat_1."),
             ("reduction_b.", "mixed_7a."), ("inception_resnet_c.", "repeat_2."),
             ("inception_resnet_c_last.", "block8."), ("classifier.", "classif.")]
        },
        checkpointAliases: [("last_linear.", "classif.")], auxiliaryHead: true,
        build: residual(.v2))

    /// Paper Figure 15 with Figures 3, 16, 7, 17, 18, 19. No released weights.
    static let inceptionResNetV2Paper = ModelSpec(
        name: "inception_resnet_v2_paper", classes: 1000, preprocessing: .inceptionV4,
        weightsNote: "none released: train it (paper network)", outputNote: "ImageNet-1k logits (1000)",
        build: residual(.v2Paper))

    /// Paper Figure 15 with Figures 14, 10, 7, 11, 12, 13. No released weights.
    static let inceptionResNetV1 = ModelSpec(
        name: "inception_resnet_v1", classes: 1000, preprocessing: .inceptionV4,
        weightsNote: "none released: train it (paper network)", outputNote: "ImageNet-1k logits (1000)",
        build: residual(.v1Paper))

    /// facenet-pytorch 2.6 `InceptionResnetV1`: face embeddings (VGGFace2 / CASIA-WebFace weights), by default with
    /// no classifier. facenet-pytorch numbers the residual stacks from 1 (timm's IR-v2 from none).
    static let inceptionResNetV1FaceNet = ModelSpec(
        name: "inception_resnet_v1_facenet", classes: nil, preprocessing: .faceNet,
        weightsNote: "facenet-pytorch's checkpoints (--weights)", outputNote: "512-d face embedding",
        classifierWeight: "logits.weight",
        checkpointPrefixes: {
            [("inception_resnet_a.", "repeat_1."), ("reduction_a.", "mixed_6a."), ("inception_resnet_b.", "repeat_2."),
             ("reduction_b.", "mixed_7a."), ("inception_resnet_c.", "repeat_3."),
             ("inception_resnet_c_last.", "block8."), ("bottleneck_bn.", "last_bn."), ("bottleneck.", "last_linear.")]
        }
    ) { request in
        residual(.v1FaceNet(classes: request.classes))(request)
    }

    /// An Inception-ResNet configuration's builder: its classifier resized, its stages repeated as asked.
    private static func residual(_ base: InceptionResNet.Configuration)
        -> @Sendable (GraphRequest) -> Graph
    {
        { request in
            var config = base
            if case let .classifier(_, dropout) = config.head {
                config.head = .classifier(classes: request.classes!, dropout: dropout)
            }
            if let repeats = request.repeats { config.repeats = repeats }
            config.auxiliaryHead = request.auxiliaryHead
            return InceptionResNet.graph(config)
        }
    }

    /// timm `inception_v4`'s stage names: `features.N` for every stem layer and block of the full network in build
    /// order, `last_linear` for the classifier.
    private static let inceptionV4Prefixes: [(ours: String, theirs: String)] =
        InceptionV4.graph().stagesWithParameters.filter { $0 != "classifier" }.enumerated()
            .map { ("\($0.element).", "features.\($0.offset).") } + [("classifier.", "last_linear.")]
}
