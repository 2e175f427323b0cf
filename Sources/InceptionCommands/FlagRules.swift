import ArgumentParser
import Foundation
import Inception
import InceptionIO

/// The one place a number from the command line is checked, before any work and before any file or folder is made:
/// each flag has one rule, the same in every command that takes it, and a value outside it is refused in one line
/// naming the flag. Sizes that pass are then checked against the memory they need where it is known (the engine
/// refuses a forward pass or a training step that cannot fit, before allocating it).
enum FlagRule {
    /// Images per forward pass or per training step: up to 4096 (the ONNX export's largest fixed batch).
    static let batches = 1...4096
    /// Classes of a classifier.
    static let classes = 1...1_000_000
    /// Square input sizes: from the network's own minimum up to 4096 pixels.
    static let largestInputSize = 4096

    static func batch(_ value: Int, _ flag: String = "--batch", least: Int = 1) throws {
        guard (least...batches.upperBound).contains(value) else {
            throw CLIError("\(flag) must be from \(least) to \(batches.upperBound), not \(value)")
        }
    }

    static func inputSize(_ value: Int?, for model: ModelName) throws {
        guard let value else { return }
        let minimum = model.minimumInputSize
        guard (minimum...largestInputSize).contains(value) else {
            throw CLIError("--input-size must be from \(minimum) (the smallest \(model.rawValue) takes) to "
                                  + "\(largestInputSize), not \(value)")
        }
    }

    static func count(_ value: Int?, _ flag: String, in range: ClosedRange<Int>) throws {
        guard let value, !range.contains(value) else { return }
        let bounds = range.upperBound == .max ? "at least \(range.lowerBound)"
            : "from \(range.lowerBound) to \(range.upperBound)"
        throw CLIError("\(flag) must be \(bounds), not \(value)")
    }

    /// A finite number in `range`, whose ends are excluded where `open` says so.
    static func number(_ value: Float?, _ flag: String, _ range: ClosedRange<Float>,
                       open: (lower: Bool, upper: Bool) = (false, false)) throws {
        guard let value else { return }
        let inside = value.isFinite && range.contains(value) && !(open.lower && value == range.lowerBound)
            && !(open.upper && value == range.upperBound)
        guard !inside else { return }
        let low = open.lower ? "above \(range.lowerBound.shortText)" : "at least \(range.lowerBound.shortText)"
        let high = range.upperBound == .greatestFiniteMagnitude ? ""
            : (open.upper ? " and below " : " and at most ") + range.upperBound.shortText
        throw CLIError("\(flag) must be a number \(low)\(high), not \(value)")
    }

    /// An output path that is one of the command's inputs, refused before any work; and `-` (standard output)
    /// beside `--json`, which prints there too.
    static func output(_ output: String, notAmong inputs: [String], json: Bool = false,
                       flag: String = "--output") throws {
        if FileOutput.isStandardOutput(output) && json {
            throw CLIError("--json prints to standard output: give \(flag) a file")
        }
        do { try FileOutput.checkNotAnInput(output, inputs: inputs) } catch {
            throw CLIError("\(flag) \(error.path): \(error.reason)")
        }
    }
}

extension Float {
    /// 0.1, 1, 1e+06: the shortest text that reads back as the value.
    fileprivate var shortText: String { self == rounded() && abs(self) < 1e6 ? String(Int(self)) : "\(self)" }
}

extension ModelName {
    /// The smallest square input the network takes.
    var minimumInputSize: Int { graph(classes: spec.classes).minimumInputSize }
}
