import InceptionEngine

/// The one measure of closeness the tests use: ‖a − b‖₂ / ‖b‖₂, in Double.
public func relativeError<A: Collection<Float>, B: Collection<Float>>(_ a: A, _ b: B) -> Double {
    precondition(a.count == b.count, "\(a.count) vs \(b.count) values")
    var num = 0.0, den = 0.0
    for (x, y) in zip(a, b) {
        num += (Double(x) - Double(y)) * (Double(x) - Double(y))
        den += Double(y) * Double(y)
    }
    return (num / max(den, 1e-300)).squareRoot()
}

/// `relativeError` of each row (sample) of `a` against `b`, both `[n, …]`.
public func perSampleRelativeError(_ a: Tensor, _ b: Tensor) -> [Double] {
    precondition(a.shape == b.shape, "shapes \(a.shape) and \(b.shape) differ")
    let n = a.shape[0], per = a.count / n
    return (0..<n).map { s in
        let row = (s * per)..<((s + 1) * per)
        return relativeError(a.scalars[row], b.scalars[row])
    }
}

/// The cosine of each row (sample) of `a` with that of `b`.
public func perSampleCosine(_ a: Tensor, _ b: Tensor) -> [Double] {
    let n = a.shape[0], per = a.count / n
    return (0..<n).map { s in
        var dot = 0.0, na = 0.0, nb = 0.0
        for i in (s * per)..<((s + 1) * per) {
            dot += Double(a.scalars[i]) * Double(b.scalars[i])
            na += Double(a.scalars[i]) * Double(a.scalars[i])
            nb += Double(b.scalars[i]) * Double(b.scalars[i])
        }
        return dot / (na * nb).squareRoot()
    }
}

/// A test helper's failure, in one line.
public struct Failure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
