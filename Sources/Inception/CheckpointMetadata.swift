import Foundation
import InceptionIO

/// What a checkpoint says about itself beside its tensors, in safetensors' `__metadata__` (a map of strings, which
/// timm and `safetensors.torch.load_file` ignore): the network, the names of its classes and the input size it was
/// trained at. A run of `inception train` writes all three, so the model it makes classifies with its own labels at
/// its own size.
public struct CheckpointMetadata: Sendable, Equatable {
    public var model: ModelName?
    /// The logits' class names, in order.
    public var classNames: [String]?
    /// The square input size the weights were trained at.
    public var inputSize: Int?
    /// Blocks in the A, B and C stages, for a network trained at reduced depth (`inception train --repeats`).
    public var repeats: [Int]?

    public init(model: ModelName? = nil, classNames: [String]? = nil, inputSize: Int? = nil, repeats: [Int]? = nil) {
        (self.model, self.classNames, self.inputSize, self.repeats) = (model, classNames, inputSize, repeats)
    }

    /// Reads the entries this library writes; other entries (timm's `format`, an epoch) are ignored. A malformed
    /// entry is an error naming it.
    public init(_ strings: [String: String]) throws {
        model = strings["model"].flatMap(ModelName.init(rawValue:))
        if let text = strings["classes"] {
            guard let names = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String] else {
                throw WeightsError.badMetadata(key: "classes", reason: "not a JSON list of strings")
            }
            classNames = names
        }
        if let text = strings["input_size"] {
            guard let size = Int(text), (1...4096).contains(size) else {
                throw WeightsError.badMetadata(key: "input_size",
                                               reason: "'\(text.prefix(20))' is not a size in 1…4096")
            }
            inputSize = size
        }
        if let text = strings["repeats"] {
            let counts = text.split(separator: ",").compactMap { Int($0) }
            guard counts.count == 3, counts.allSatisfy({ (1...64).contains($0) }) else {
                throw WeightsError.badMetadata(key: "repeats",
                                               reason: "'\(text.prefix(20))' is not three counts in 1…64")
            }
            repeats = counts
        }
    }

    /// The metadata of a safetensors file.
    public init(contentsOf url: URL) throws { try self.init(try openTensorFile(url).metadata) }

    /// The entries to write: timm's `format` marker and those of `self` that are set.
    public var strings: [String: String] {
        var strings = ["format": "pt"]
        strings["model"] = model?.rawValue
        if let classNames, let data = try? JSONSerialization.data(withJSONObject: classNames) {
            strings["classes"] = String(decoding: data, as: UTF8.self)
        }
        strings["input_size"] = inputSize.map(String.init)
        strings["repeats"] = repeats.map { $0.map(String.init).joined(separator: ",") }
        return strings
    }
}
