@_exported import InceptionEngine
import InceptionModels

/// The networks this library builds, by the names timm and the command line use.
public enum ModelName: String, CaseIterable, Sendable, CustomStringConvertible {
    case inceptionV4 = "inception_v4"

    public var description: String { rawValue }

    /// Where the classifier's weight sits in our parameter names (its rows are the classes).
    var classifierWeight: String {
        switch self {
        case .inceptionV4: return "classifier.weight"
        }
    }

    public var defaultClasses: Int { 1000 }

    public var defaultInputSize: Int {
        switch self {
        case .inceptionV4: return 299
        }
    }

    /// The network with `classes` outputs.
    public func graph(classes: Int? = nil) -> Graph {
        switch self {
        case .inceptionV4:
            var config = InceptionV4.Configuration()
            config.classes = classes ?? defaultClasses
            return InceptionV4.graph(config)
        }
    }

    /// How our parameter names map to the released checkpoint's keys: (our prefix, checkpoint prefix) pairs,
    /// the first matching prefix wins; names under no prefix are the same in both.
    public var checkpointPrefixes: [(ours: String, theirs: String)] {
        switch self {
        case .inceptionV4:
            // timm `inception_v4` numbers its stages `features.N` in order, pools included.
            let config = InceptionV4.Configuration()
            var stages = ["conv2d_1a", "conv2d_2a", "conv2d_2b", "mixed_3a", "mixed_4a", "mixed_5a"]
            stages += (0..<config.repeats.a).map { "inception_a.\($0)" } + ["reduction_a"]
            stages += (0..<config.repeats.b).map { "inception_b.\($0)" } + ["reduction_b"]
            stages += (0..<config.repeats.c).map { "inception_c.\($0)" }
            return stages.enumerated().map { ("\($0.element).", "features.\($0.offset).") }
                + [("classifier.", "last_linear.")]
        }
    }

    public func checkpointKey(_ name: String) -> String {
        for (ours, theirs) in checkpointPrefixes where name.hasPrefix(ours) {
            return theirs + name.dropFirst(ours.count)
        }
        return name
    }
}
