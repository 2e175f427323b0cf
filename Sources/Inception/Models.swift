@_exported import InceptionEngine
import InceptionIO
import InceptionModels

/// The networks this library builds, by the names timm and the command line use.
public enum ModelName: String, CaseIterable, Sendable, CustomStringConvertible {
    /// Paper Figure 9 = the TF-slim release = timm `inception_v4`.
    case inceptionV4 = "inception_v4"
    /// The TF-slim release = timm `inception_resnet_v2` (not the paper's network; see `InceptionResNet`).
    case inceptionResNetV2 = "inception_resnet_v2"
    /// Paper Figure 15 with Figures 3, 16, 7, 17, 18, 19. No released weights.
    case inceptionResNetV2Paper = "inception_resnet_v2_paper"
    /// Paper Figure 15 with Figures 14, 10, 7, 11, 12, 13. No released weights.
    case inceptionResNetV1 = "inception_resnet_v1"
    /// facenet-pytorch 2.6 `InceptionResnetV1`: face embeddings (VGGFace2 / CASIA-WebFace weights).
    case inceptionResNetV1FaceNet = "inception_resnet_v1_facenet"

    public var description: String { rawValue }

    /// Our name of the classifier's weight (its rows are the classes).
    public var classifierWeight: String { self == .inceptionResNetV1FaceNet ? "logits.weight" : "classifier.weight" }

    /// Classes of the default graph; nil for the face model, which by default has no classifier.
    public var defaultClasses: Int? { self == .inceptionResNetV1FaceNet ? nil : 1000 }

    public var defaultInputSize: Int { self == .inceptionResNetV1FaceNet ? 160 : 299 }

    /// Whether TF-slim released this network with an auxiliary classifier (`AuxLogits`), which training may add.
    public var hasAuxiliaryHead: Bool { self == .inceptionV4 || self == .inceptionResNetV2 }

    /// The network with `classes` outputs (nil: the default) and, for reduced-depth experiments, `repeats` blocks
    /// in its A, B and C stages (nil: the network's own). A reduced-depth network keeps the key names of the full
    /// one (inception_v4 numbers its stages as the full network does), so its checkpoints are for this library only.
    /// `auxiliaryHead` adds TF-slim's auxiliary classifier (output `aux_logits`; see `hasAuxiliaryHead`).
    public func graph(classes: Int? = nil, repeats: [Int]? = nil, auxiliaryHead: Bool = false) -> Graph {
        let classes = classes ?? defaultClasses
        precondition(repeats == nil || repeats!.count == 3 && repeats!.allSatisfy { $0 >= 1 }, "three block counts ≥ 1")
        precondition(!auxiliaryHead || hasAuxiliaryHead, "\(self) has no auxiliary head")
        func adapted(_ config: InceptionResNet.Configuration) -> InceptionResNet.Configuration {
            var config = config
            if case let .classifier(_, dropout) = config.head { config.head = .classifier(classes: classes!,
                dropout: dropout) }
            if let r = repeats { config.repeats = (r[0], r[1], r[2]) }
            config.auxiliaryHead = auxiliaryHead
            return config
        }
        switch self {
        case .inceptionV4:
            var config = InceptionV4.Configuration()
            config.classes = classes!
            if let r = repeats { config.repeats = (r[0], r[1], r[2]) }
            config.auxiliaryHead = auxiliaryHead
            return InceptionV4.graph(config)
        case .inceptionResNetV2: return InceptionResNet.graph(adapted(.v2))
        case .inceptionResNetV2Paper: return InceptionResNet.graph(adapted(.v2Paper))
        case .inceptionResNetV1: return InceptionResNet.graph(adapted(.v1Paper))
        case .inceptionResNetV1FaceNet: return InceptionResNet.graph(adapted(.v1FaceNet(classes: classes)))
        }
    }

    /// How our parameter names map to the released checkpoint's keys: (our prefix, checkpoint prefix) pairs,
    /// the first matching prefix wins; names under no prefix are the same in both. The paper-only networks have
    /// no released checkpoint and use our names.
    public var checkpointPrefixes: [(ours: String, theirs: String)] {
        switch self {
        case .inceptionV4: return Self.inceptionV4Prefixes
        case .inceptionResNetV2:
            return [("inception_resnet_a.", "repeat."), ("reduction_a.", "mixed_6a."),
                    ("inception_resnet_b.", "repeat_1."), ("reduction_b.", "mixed_7a."),
                    ("inception_resnet_c.", "repeat_2."), ("inception_resnet_c_last.", "block8."),
                    ("classifier.", "classif.")]
        case .inceptionResNetV1FaceNet:
            // facenet-pytorch numbers the residual stacks from 1 (timm's IR-v2 from none).
            return [("inception_resnet_a.", "repeat_1."), ("reduction_a.", "mixed_6a."),
                    ("inception_resnet_b.", "repeat_2."), ("reduction_b.", "mixed_7a."),
                    ("inception_resnet_c.", "repeat_3."), ("inception_resnet_c_last.", "block8."),
                    ("bottleneck_bn.", "last_bn."), ("bottleneck.", "last_linear.")]
        case .inceptionResNetV2Paper, .inceptionResNetV1:
            return []
        }
    }

    /// timm `inception_v4` numbers its stages `features.N` in build order — every stem layer and block of the full
    /// network, as InceptionV4.graph builds them — and calls the classifier `last_linear`.
    static let inceptionV4Prefixes: [(ours: String, theirs: String)] =
        InceptionV4.graph().stagesWithParameters.filter { $0 != "classifier" }.enumerated()
            .map { ("\($0.element).", "features.\($0.offset).") } + [("classifier.", "last_linear.")]

    /// Whether a checkpoint holds every parameter of this network with its shape (any classifier size). Only
    /// networks with released checkpoints are considered.
    func fits(_ shapes: [String: [Int]]) -> Bool {
        guard !checkpointPrefixes.isEmpty else { return false }
        let classifier = String(classifierWeight.dropLast("weight".count))
        return graph().parameters.allSatisfy {
            $0.name.hasPrefix(classifier) || shapes[checkpointKey($0.name)] == $0.shape
        }
    }

    public func checkpointKey(_ name: String) -> String {
        for (ours, theirs) in checkpointPrefixes where name.hasPrefix(ours) {
            return theirs + name.dropFirst(ours.count)
        }
        return name
    }
}

extension ModelName {
    /// The eval transform of the model's released weights (the paper networks use Inception-v4's).
    public var preprocessing: Preprocessing {
        switch self {
        case .inceptionV4, .inceptionResNetV2Paper, .inceptionResNetV1: return .inceptionV4
        case .inceptionResNetV2: return .inceptionResNetV2
        case .inceptionResNetV1FaceNet: return .faceNet
        }
    }
}

/// The package's version (`inception --version`, the server's `/v2` metadata).
public enum InceptionPackage {
    public static let version = "0.9.0"
}
