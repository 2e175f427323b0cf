import InceptionIO

extension ModelName {
    /// Other published checkpoints' names for this network's parameters, by key prefix. Cadene's pretrainedmodels
    /// (`inceptionresnetv2-520b38e4.pth`) calls Inception-ResNet-v2's classifier `last_linear` where timm says
    /// `classif`; its `inceptionv4-8e4777a0.pth` already uses timm's names. Both have 1001-class heads (background
    /// at 0), which load as such.
    public var checkpointAliases: [(theirs: String, released: String)] { spec.checkpointAliases }

    /// `file` seen in the released key names: each key under an alias prefix is renamed, unless the file also has
    /// the released name (then nothing is renamed and strict loading reports what does not fit).
    public func inReleasedLayout(_ file: any TensorFile) -> any TensorFile {
        let shapes = file.shapes
        var renamed: [String: String] = [:]
        for (theirs, released) in checkpointAliases
        where !shapes.keys.contains(where: { $0.hasPrefix(released) }) {
            for key in shapes.keys where key.hasPrefix(theirs) {
                renamed[released + key.dropFirst(theirs.count)] = key
            }
        }
        return renamed.isEmpty ? file : RenamedTensorFile(base: file, original: renamed)
    }
}

/// A tensor file under other names: `original[name]` is the base file's key for `name`.
struct RenamedTensorFile: TensorFile {
    let base: any TensorFile
    let original: [String: String]

    var shapes: [String: [Int]] {
        let renamedFrom = Dictionary(uniqueKeysWithValues: original.map { ($1, $0) })
        return Dictionary(uniqueKeysWithValues: base.shapes.map { (renamedFrom[$0] ?? $0, $1) })
    }

    var metadata: [String: String] { base.metadata }

    func floats(_ name: String) throws -> [Float] { try base.floats(original[name] ?? name) }
}
