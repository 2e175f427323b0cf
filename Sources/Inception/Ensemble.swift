import Foundation
import InceptionEngine
import InceptionIO

/// How the views of an image, and the members of an ensemble, are combined.
public enum CropAverage: String, Sendable, CaseIterable {
    /// The mean of each view's softmax probabilities (the paper's and GoogLeNet's protocol; the default).
    case probabilities
    /// The softmax of the mean of the views' logits.
    case logits
}

/// One or more classifiers scored together: each member sees an image through its own preprocessing and the views
/// of a crop protocol, and the members' class probabilities are averaged (the paper's ensembles, Table 5). A single
/// model is an ensemble of one.
public struct Ensemble: Sendable {
    public let members: [InceptionModel]

    /// Members must share one label space: the same number of classes and the same class names (a 1000-way and a
    /// 1001-way ImageNet classifier do not mix).
    public init(_ members: [InceptionModel]) throws {
        guard let first = members.first else { throw EnsembleError.empty }
        for member in members {
            guard member.graph.outputs[.logits] != nil else {
                throw InputError.unknownOutput(.logits, model: member.name.rawValue, available: member.outputNames)
            }
            guard member.classes == first.classes, member.classNames == first.classNames else {
                throw EnsembleError.labelSpaces(first.name.rawValue, first.classes, member.name.rawValue,
                                                member.classes)
            }
        }
        self.members = members
    }

    /// Each member's views of each image, normalised (`[image][member][view]`): what `probabilities` runs.
    public func views(_ images: [RGBImage], crops: CropProtocol) -> [[[[Float]]]] {
        images.map { image in
            members.map { $0.name.spec.preprocessing.apply(image, crops: crops, inputSize: $0.inputSize) }
        }
    }

    /// The class probabilities of each image (`views` of it): per member its views' combined by `average`, then the
    /// members' averaged. Views run through each network in passes of at most `batch`.
    public func probabilities(views: [[[[Float]]]], average: CropAverage = .probabilities, batch: Int = 8,
                              threads: Int = Parallel.defaultThreads) throws -> [[Double]] {
        var sums = [[Double]](repeating: [], count: views.count)
        for (m, member) in members.enumerated() {
            let rows = try member.logitRows(views.flatMap { $0[m] }, batch: batch, threads: threads)
            var next = 0
            for (i, image) in views.enumerated() {
                let count = image[m].count
                let combined = Self.combine(Array(rows[next..<(next + count)]), average)
                next += count
                sums[i] = sums[i].isEmpty ? combined : zip(sums[i], combined).map(+)
            }
        }
        return sums.map { row in row.map { $0 / Double(members.count) } }
    }

    /// The top-`top` classes of each probability row, labelled by the first member.
    public func predictions(_ probabilities: [[Double]], top: Int) -> [[Prediction]] {
        probabilities.map { row in
            topIndices(row, top).map {
                let (label, wordNetID) = members[0].label($0)
                return Prediction(index: $0, label: label, wordNetID: wordNetID, probability: Float(row[$0]))
            }
        }
    }

    /// The top-`top` classes of each image.
    public func classify(_ images: [RGBImage], crops: CropProtocol = .single, average: CropAverage = .probabilities,
                         top: Int = 5, batch: Int = 8,
                         threads: Int = Parallel.defaultThreads) throws -> [[Prediction]] {
        predictions(try probabilities(views: views(images, crops: crops), average: average, batch: batch,
                                      threads: threads), top: top)
    }

    /// The views' rows combined into one probability row.
    static func combine(_ rows: [[Double]], _ average: CropAverage) -> [Double] {
        switch average {
        case .probabilities:
            let probabilities = rows.map(softmax)
            return (0..<rows[0].count).map { k in probabilities.reduce(0) { $0 + $1[k] } / Double(rows.count) }
        case .logits:
            return softmax((0..<rows[0].count).map { k in rows.reduce(0) { $0 + $1[k] } / Double(rows.count) })
        }
    }
}

public enum EnsembleError: Error, Equatable, CustomStringConvertible {
    case empty
    case labelSpaces(String, Int?, String, Int?)

    public var description: String {
        switch self {
        case .empty: return "an ensemble needs at least one model"
        case let .labelSpaces(a, ac, b, bc):
            return "\(a) (\(ac.map(String.init) ?? "no") classes) and \(b) (\(bc.map(String.init) ?? "no") classes) "
                + "do not share one label space; an ensemble averages the probabilities of the same classes"
        }
    }
}

extension InceptionModel {
    /// The logits of prepared views, in passes of at most `batch`, as Double rows.
    func logitRows(_ views: [[Float]], batch: Int, threads: Int) throws -> [[Double]] {
        let node = graph.outputs[.logits]!
        var rows: [[Double]] = []
        for start in stride(from: 0, to: views.count, by: max(1, batch)) {
            let chunk = views[start..<min(views.count, start + max(1, batch))]
            let logits = try finite(compiled.run(Tensor(shape: [chunk.count, inputSize, inputSize, 3],
                                                        scalars: chunk.flatMap { $0 }), output: node, threads: threads),
                                    output: .logits)
            let c = logits.shape[1]
            rows += (0..<chunk.count).map { i in logits.scalars[(i * c)..<((i + 1) * c)].map(Double.init) }
        }
        return rows
    }
}
