import Foundation

/// Two face images and whether they show the same person: one line of LFW's `pairs.txt`.
public struct FacePair: Sendable, Equatable {
    public let first: String
    public let second: String
    public let same: Bool

    public init(first: String, second: String, same: Bool) {
        (self.first, self.second, self.same) = (first, second, same)
    }
}

public enum VerificationError: Error, Equatable, CustomStringConvertible {
    case badLine(Int, String)
    /// A person's name that is not a folder name inside the image folder (a path separator, `.`, `..`, a NUL).
    case badName(Int, String)
    /// A line longer than `PairsFile.maximumLineBytes`.
    case longLine(Int)
    /// LFW's first line "folds pairs" does not match the lines that follow (folds × pairs × 2).
    case headerMismatch(folds: Int, pairs: Int, lines: Int)
    case tooFewPairs(Int)
    case oneKindOnly

    public var description: String {
        switch self {
        case let .badLine(line, text):
            return "pairs line \(line) '\(text.prefix(80))' is neither 'name n m' nor 'name n other m'"
        case let .badName(line, name):
            return "pairs line \(line): '\(name.prefix(80))' is not a person's name (a folder inside the image "
                + "folder: no '/', '.', '..' or NUL)"
        case let .longLine(line):
            return "pairs line \(line) is longer than \(PairsFile.maximumLineBytes) bytes"
        case let .headerMismatch(folds, pairs, lines):
            return "the pairs file's first line says \(folds) folds of \(pairs) same and \(pairs) different pairs, "
                + "but \(lines) pair lines follow"
        case let .tooFewPairs(count): return "\(count) pairs are too few for 10 folds (at least 10)"
        case .oneKindOnly: return "the pairs are all of one kind; verification needs same and different pairs"
        }
    }
}

/// facenet's `evaluate` protocol (Schroff et al. 2015 as David Sandberg's facenet computes it) on the squared
/// Euclidean distances of L2-normalised embeddings: ten contiguous folds (scikit-learn's KFold without shuffling);
/// per fold the threshold of best accuracy on the other nine (thresholds 0, 0.01, … 3.99; a pair is "same" below
/// it), accuracy on the fold; VAL at FAR = 1e-3 with the threshold interpolated on the other nine (thresholds
/// 0, 0.001, … 3.999); and the ROC over all pairs with its AUC (scikit-learn's `roc_curve` and `auc`).
public struct Verification: Sendable {
    public let accuracies: [Double]
    public let thresholds: [Double]
    public let vals: [Double], fars: [Double]
    /// The ROC of all pairs: (false positive rate, true positive rate), from (0, 0) to (1, 1).
    public let roc: [(fpr: Double, tpr: Double)]
    public let auc: Double

    public var accuracy: Double { Self.mean(accuracies) }
    public var accuracyStd: Double { Self.std(accuracies) }
    public var val: Double { Self.mean(vals) }
    public var valStd: Double { Self.std(vals) }
    public var far: Double { Self.mean(fars) }

    public init(distances: [Double], same: [Bool], folds: Int = 10, farTarget: Double = 1e-3) throws {
        guard distances.count >= folds else { throw VerificationError.tooFewPairs(distances.count) }
        guard same.contains(true), same.contains(false) else { throw VerificationError.oneKindOnly }
        let grid = (0..<400).map { Double($0) / 100 }, fine = (0..<4000).map { Double($0) / 1000 }
        var (accuracies, thresholds, vals, fars) = ([Double](), [Double](), [Double](), [Double]())
        // Each threshold's training counts by binary search in sorted distances (all pairs' minus the fold's): the
        // same integers as a pass over the training pairs, in O(log n) instead of O(n) (10⁶ pairs: 83 s before).
        let all = SortedDistances(distances, same, distances.indices)
        for test in Self.folds(distances.count, folds) {
            let train = all.removing(SortedDistances(distances, same, test))
            let trainAccuracy = grid.map { train.rates($0).accuracy }
            let best = grid[trainAccuracy.firstIndex(of: trainAccuracy.max()!)!]
            thresholds.append(best)
            accuracies.append(Self.rates(best, distances, same, Array(test)).accuracy)
            let threshold = Self.threshold(atFAR: farTarget, fine.map { ($0, train.rates($0).far) })
            let rates = Self.rates(threshold, distances, same, Array(test))
            vals.append(rates.val)
            fars.append(rates.far)
        }
        (self.accuracies, self.thresholds, self.vals, self.fars) = (accuracies, thresholds, vals, fars)
        (roc, auc) = Self.roc(distances, same)
    }

    /// scikit-learn's KFold(n_splits, shuffle=False): contiguous, the first n % k folds one longer.
    static func folds(_ n: Int, _ k: Int) -> [Range<Int>] {
        var start = 0
        return (0..<k).map { i in
            let size = n / k + (i < n % k ? 1 : 0)
            defer { start += size }
            return start..<(start + size)
        }
    }

    /// Accuracy, VAL (true accepts / same pairs) and FAR (false accepts / different pairs) of `distance < threshold`
    /// over `pairs` (facenet's, 0 where a kind is absent).
    static func rates(_ threshold: Double, _ distances: [Double], _ same: [Bool], _ pairs: [Int])
        -> (accuracy: Double, val: Double, far: Double) {
        var (trueAccepts, falseAccepts, nSame) = (0, 0, 0)
        for i in pairs {
            nSame += same[i] ? 1 : 0
            guard distances[i] < threshold else { continue }
            if same[i] { trueAccepts += 1 } else { falseAccepts += 1 }
        }
        let nDifferent = pairs.count - nSame, trueRejects = nDifferent - falseAccepts
        return (Double(trueAccepts + trueRejects) / Double(max(1, pairs.count)),
                nSame == 0 ? 0 : Double(trueAccepts) / Double(nSame),
                nDifferent == 0 ? 0 : Double(falseAccepts) / Double(nDifferent))
    }

    /// The distances of the same and of the different pairs among some pairs, sorted, so that how many lie below a
    /// threshold is a binary search; `removing` subtracts another set's counts (the training pairs: all but a fold).
    struct SortedDistances {
        let same: [Double], different: [Double]
        /// Pairs of each kind in the set, a NaN distance (never below a threshold) included.
        let sameCount: Int, differentCount: Int
        let minus: [SortedDistances]

        init(_ distances: [Double], _ kinds: [Bool], _ pairs: some Sequence<Int>) {
            var (same, different, sameCount, differentCount) = ([Double](), [Double](), 0, 0)
            for i in pairs {
                if kinds[i] { sameCount += 1 } else { differentCount += 1 }
                guard !distances[i].isNaN else { continue }
                if kinds[i] { same.append(distances[i]) } else { different.append(distances[i]) }
            }
            (self.same, self.different) = (same.sorted(), different.sorted())
            (self.sameCount, self.differentCount, minus) = (sameCount, differentCount, [])
        }

        private init(_ base: SortedDistances, minus other: SortedDistances) {
            (same, different, sameCount, differentCount) = (base.same, base.different,
                                                            base.sameCount - other.sameCount,
                                                            base.differentCount - other.differentCount)
            minus = [other]
        }

        func removing(_ other: SortedDistances) -> SortedDistances { SortedDistances(self, minus: other) }

        /// As `Verification.rates` over the set's pairs.
        func rates(_ threshold: Double) -> (accuracy: Double, val: Double, far: Double) {
            let trueAccepts = Self.below(threshold, same) - minus.reduce(0) { $0 + Self.below(threshold, $1.same) }
            let falseAccepts = Self.below(threshold, different)
                - minus.reduce(0) { $0 + Self.below(threshold, $1.different) }
            let trueRejects = differentCount - falseAccepts
            return (Double(trueAccepts + trueRejects) / Double(max(1, sameCount + differentCount)),
                    sameCount == 0 ? 0 : Double(trueAccepts) / Double(sameCount),
                    differentCount == 0 ? 0 : Double(falseAccepts) / Double(differentCount))
        }

        /// How many of `sorted` are below `threshold`.
        static func below(_ threshold: Double, _ sorted: [Double]) -> Int {
            var (low, high) = (0, sorted.count)
            while low < high {
                let middle = (low + high) / 2
                if sorted[middle] < threshold { low = middle + 1 } else { high = middle }
            }
            return low
        }
    }

    /// The threshold whose training FAR is `target`, interpolated between the grid's neighbours: the largest
    /// threshold with FAR at or below it and the smallest above; 0 when no threshold reaches it (facenet).
    static func threshold(atFAR target: Double, _ curve: [(threshold: Double, far: Double)]) -> Double {
        guard let top = curve.map(\.far).max(), top >= target else { return 0 }
        let below = curve.filter { $0.far <= target }.max { ($0.far, $0.threshold) < ($1.far, $1.threshold) }
        let above = curve.filter { $0.far > target }.min { ($0.far, $0.threshold) < ($1.far, $1.threshold) }
        guard let below else { return above!.threshold }
        guard let above, below.far < target else { return below.threshold }
        return below.threshold + (target - below.far) * (above.threshold - below.threshold) / (above.far - below.far)
    }

    /// The ROC of "same" scored by −distance, at every distinct distance (scikit-learn's `roc_curve` with
    /// `drop_intermediate=False`), and its trapezoidal area.
    static func roc(_ distances: [Double], _ same: [Bool]) -> ([(fpr: Double, tpr: Double)], Double) {
        let order = distances.indices.sorted { distances[$0] < distances[$1] }
        let positives = Double(same.filter { $0 }.count), negatives = Double(same.count) - positives
        var curve: [(fpr: Double, tpr: Double)] = [(0, 0)], (tp, fp) = (0.0, 0.0)
        for (k, i) in order.enumerated() {
            if same[i] { tp += 1 } else { fp += 1 }
            if k + 1 == order.count || distances[order[k + 1]] != distances[i] {
                curve.append((fp / negatives, tp / positives))
            }
        }
        let area = zip(curve, curve.dropFirst()).reduce(0) { $0 + ($1.1.fpr - $1.0.fpr) * ($1.1.tpr + $1.0.tpr) / 2 }
        return (curve, area)
    }

    static func mean(_ values: [Double]) -> Double { values.reduce(0, +) / Double(max(1, values.count)) }

    /// numpy's std: the population standard deviation.
    static func std(_ values: [Double]) -> Double {
        let m = mean(values)
        return (values.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(max(1, values.count))).squareRoot()
    }
}

/// The ROC curve of a verification as a small SVG (true accept rate against false accept rate, both 0–1), with the
/// accuracy, VAL and AUC in its title.
public func rocSVG(_ result: Verification, title: String = "") -> String {
    let (size, margin) = (360.0, 50.0)
    func x(_ v: Double) -> Double { margin + (size - 2 * margin) * v }
    func y(_ v: Double) -> Double { size - margin - (size - 2 * margin) * v }
    let d = result.roc.enumerated().map { "\($0.offset == 0 ? "M" : "L")\(x($0.element.fpr)),\(y($0.element.tpr))" }
        .joined(separator: " ")
    let caption = String(format: "%@ accuracy %.2f%%, VAL %.2f%% @ FAR %.3f%%, AUC %.4f", title,
                         100 * result.accuracy, 100 * result.val, 100 * result.far, result.auc)
    return """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(size))" height="\(Int(size))" font-family="sans-serif" \
        font-size="11"><rect width="100%" height="100%" fill="white"/>
        <rect x="\(x(0))" y="\(y(1))" width="\(x(1) - x(0))" height="\(y(0) - y(1))" fill="none" stroke="black"/>
        <line x1="\(x(0))" y1="\(y(0))" x2="\(x(1))" y2="\(y(1))" stroke="#999" stroke-dasharray="4,3"/>
        <path d="\(d)" fill="none" stroke="#1f77b4" stroke-width="2"/>
        <text x="\(size / 2)" y="\(size - 15)" text-anchor="middle">false accept rate (0–1)</text>
        <text x="15" y="\(size / 2)" transform="rotate(-90 15 \(size / 2))" text-anchor="middle">true accept rate \
        (0–1)</text>
        <text x="\(margin)" y="30">\(caption.replacingOccurrences(of: "&", with: "&amp;")
            .replacingOccurrences(of: "<", with: "&lt;"))</text>
        </svg>

        """
}

/// How two faces are compared everywhere (`compare`, `verify`, the server's `/compare`): each embedding made a unit
/// vector in Double, then their squared Euclidean distance (0 to 4; 2 − 2 cos).
public enum FaceDistance {
    /// `row` divided by its L2 norm (floored at 1e-12), in Double.
    public static func unit(_ row: [Float]) -> [Double] {
        let values = row.map(Double.init)
        let norm = max(values.map { $0 * $0 }.reduce(0, +).squareRoot(), 1e-12)
        return values.map { $0 / norm }
    }

    public static func distance(_ a: [Double], _ b: [Double]) -> Double {
        zip(a, b).map { ($0 - $1) * ($0 - $1) }.reduce(0, +)
    }
}
