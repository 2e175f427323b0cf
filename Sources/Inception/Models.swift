import InceptionEngine
import InceptionIO
import InceptionModels

/// A network this library builds, by the name timm and the command line use; what it is lives in its `spec`.
public struct ModelName: Hashable, Sendable, CustomStringConvertible {
    public let spec: ModelSpec

    /// The network `spec` describes (a built-in one, or one the package registers).
    public init(_ spec: ModelSpec) { self.spec = spec }

    /// The network of that name, among the built-in and registered ones.
    public init?(rawValue: String) {
        guard let spec = ModelSpec.all.first(where: { $0.name == rawValue }) else { return nil }
        self.spec = spec
    }

    public var rawValue: String { spec.name }
    public var description: String { rawValue }

    public static func == (a: ModelName, b: ModelName) -> Bool { a.rawValue == b.rawValue }
    public func hash(into hasher: inout Hasher) { hasher.combine(rawValue) }

    /// Every network known to this process, built-in ones first.
    public static var allCases: [ModelName] { ModelSpec.all.map(ModelName.init) }

    /// Paper Figure 9 = the TF-slim release = timm `inception_v4`.
    public static let inceptionV4 = ModelName(.inceptionV4)
    /// The TF-slim release = timm `inception_resnet_v2` (not the paper's network; see `InceptionResNet`).
    public static let inceptionResNetV2 = ModelName(.inceptionResNetV2)
    /// Paper Figure 15 with Figures 3, 16, 7, 17, 18, 19. No released weights.
    public static let inceptionResNetV2Paper = ModelName(.inceptionResNetV2Paper)
    /// Paper Figure 15 with Figures 14, 10, 7, 11, 12, 13. No released weights.
    public static let inceptionResNetV1 = ModelName(.inceptionResNetV1)
    /// facenet-pytorch 2.6 `InceptionResnetV1`: face embeddings (VGGFace2 / CASIA-WebFace weights).
    public static let inceptionResNetV1FaceNet = ModelName(.inceptionResNetV1FaceNet)

    /// The network with `classes` outputs (nil: the default) and, for reduced-depth experiments, `repeats` blocks
    /// in its A, B and C stages (nil: the network's own). A reduced-depth network keeps the key names of the full
    /// one (inception_v4 numbers its stages as the full network does), so its checkpoints are for this library only.
    /// `auxiliaryHead` adds TF-slim's auxiliary classifier (output `aux_logits`; see `ModelSpec.auxiliaryHead`).
    package func graph(classes: Int? = nil, repeats: [Int]? = nil, auxiliaryHead: Bool = false) -> Graph {
        precondition(repeats == nil || repeats!.count == 3 && repeats!.allSatisfy { $0 >= 1 }, "three block counts ≥ 1")
        precondition(!auxiliaryHead || spec.auxiliaryHead, "\(self) has no auxiliary head")
        let blocks = repeats.map { ($0[0], $0[1], $0[2]) }
        return spec.build(GraphRequest(classes: classes ?? spec.classes, repeats: blocks,
                                       auxiliaryHead: auxiliaryHead))
    }

    /// How our parameter names map to the released checkpoint's keys: (our prefix, checkpoint prefix) pairs,
    /// the first matching prefix wins; names under no prefix are the same in both. A network with no released
    /// checkpoint uses our names.
    public var checkpointPrefixes: [(ours: String, theirs: String)] { spec.checkpointPrefixes() }

    /// Whether a checkpoint holds every parameter of this network with its shape (any classifier size). Only
    /// networks with released checkpoints are considered.
    func fits(_ shapes: [String: [Int]]) -> Bool {
        guard !checkpointPrefixes.isEmpty else { return false }
        let classifier = String(spec.classifierWeight.dropLast("weight".count))
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

extension ModelName: Codable {
    /// Written as its name (a run's `config.json`: "inception_v4"); an unknown name is a decoding error naming it.
    public init(from decoder: Decoder) throws {
        let name = try decoder.singleValueContainer().decode(String.self)
        guard let known = ModelName(rawValue: name) else {
            let known = ModelName.allCases.map(\.rawValue).joined(separator: ", ")
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription:
                "'\(name)' is not a network this program knows (\(known))"))
        }
        self = known
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// The package's version (`inception --version`, the server's `/v2` metadata).
public enum InceptionPackage {
    public static let version = "0.9.0"
}
