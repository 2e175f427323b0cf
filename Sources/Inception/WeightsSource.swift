import Foundation
import InceptionEngine
import InceptionHub

extension InceptionModel {
    /// Loads the released weights from the Hub (through the cache).
    public convenience init(pretrained name: ModelName, hub: HubClient = HubClient()) throws {
        try self.init(try ModelWeights(name, from: .released(hub)))
    }
}

/// Where a model's weights come from: the one way the command line and the server load a model.
public enum WeightsSource: Sendable {
    /// A checkpoint in the released layout (timm's or facenet-pytorch's key names), loaded strictly.
    case file(URL)
    /// The released weights from the Hub, through its cache.
    case released(HubClient)
    /// Random weights with realistic statistics, from a seed (benchmarks, load tests, trying the API).
    case random(seed: UInt64)
}

extension InceptionModel {
    /// Loads `name` with the weights `source` names, its convolutions in `precision` (int8 needs a quantised
    /// checkpoint, see ``Quantization``).
    public convenience init(_ name: ModelName, from source: WeightsSource, precision: Precision = .fp32) throws {
        let route = try PrecisionRoute(precision)  // before any weights are read
        try self.init(try ModelWeights(name, from: source), route: route)
    }
}
