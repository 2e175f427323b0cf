import Foundation

extension ModelName {
    /// The Hub repository of the released weights (`model.safetensors`), where one exists.
    public var hubRepository: String? {
        switch self {
        case .inceptionV4: return "timm/inception_v4.tf_in1k"
        case .inceptionResNetV2: return "timm/inception_resnet_v2.tf_in1k"
        case .inceptionResNetV2Paper, .inceptionResNetV1, .inceptionResNetV1FaceNet: return nil
        }
    }
}

extension InceptionModel {
    /// Loads the released weights from the Hub (through the cache).
    public convenience init(pretrained name: ModelName, hub: HubClient = HubClient()) throws {
        guard let repo = name.hubRepository else { throw HubError.noReleasedWeights(model: name.rawValue) }
        try self.init(name, weights: try hub.file(repo: repo, filename: "model.safetensors"))
    }
}
