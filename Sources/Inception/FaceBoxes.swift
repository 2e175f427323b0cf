/// MTCNN's candidate boxes between its stages, and the box arithmetic of facenet-pytorch's `detect_face`, in
/// Float32 and in its order of operations, so that boxes agree to the last bits, not only to the pixel.
struct Candidate {
    var x1: Float, y1: Float, x2: Float, y2: Float
    var score: Float
    /// The network's box regression (x1, y1, x2, y2), in units of the box's size.
    var regression: SIMD4<Float>
    /// O-Net's landmarks: five x, then five y.
    var landmarks: [Float] = []

    /// `generateBoundingBox`: P-Net's output pixel (x, y) at `scale` as the 12 × 12 window it saw, in the photo.
    init(pnetX x: Int, y: Int, scale: Float, score: Float, regression: SIMD4<Float>) {
        x1 = ((2 * Float(x) + 1) / scale).rounded(.down)
        y1 = ((2 * Float(y) + 1) / scale).rounded(.down)
        x2 = ((2 * Float(x) + 12) / scale).rounded(.down)
        y2 = ((2 * Float(y) + 12) / scale).rounded(.down)
        (self.score, self.regression) = (score, regression)
    }

    /// The first stage's regression (`qq1 … qq4`): by the box's size x2 − x1, y2 − y1.
    mutating func applyProposalRegression() {
        let (w, h) = (x2 - x1, y2 - y1)
        (x1, y1, x2, y2) = (x1 + regression[0] * w, y1 + regression[1] * h,
                            x2 + regression[2] * w, y2 + regression[3] * h)
    }

    /// `bbreg`: by the box's size in pixels, x2 − x1 + 1.
    mutating func applyRegression() {
        let (w, h) = (x2 - x1 + 1, y2 - y1 + 1)
        (x1, y1, x2, y2) = (x1 + regression[0] * w, y1 + regression[1] * h,
                            x2 + regression[2] * w, y2 + regression[3] * h)
    }

    /// `rerec`: the square of side max(w, h) with the same centre.
    mutating func square() {
        let (w, h) = (x2 - x1, y2 - y1)
        let side = max(w, h)
        x1 = x1 + w * 0.5 - side * 0.5
        y1 = y1 + h * 0.5 - side * 0.5
        (x2, y2) = (x1 + side, y1 + side)
    }

    /// `pad`: the pixels of the box inside a `width × height` photo as the crop facenet-pytorch takes,
    /// columns `x − 1 ..< ex` and rows `y − 1 ..< ey` after truncation; nil where nothing is inside.
    func pixelsInside(width: Int, height: Int) -> (left: Int, top: Int, width: Int, height: Int)? {
        func truncated(_ v: Float) -> Int { v.isFinite ? Int(max(min(v, 1e9), -1e9)) : 0 }
        let x = max(truncated(x1), 1), y = max(truncated(y1), 1)
        let ex = min(truncated(x2), width), ey = min(truncated(y2), height)
        guard ex > x - 1, ey > y - 1 else { return nil }
        return (x - 1, y - 1, ex - x + 1, ey - y + 1)
    }

    /// `(x2 − x1) · (y2 − y1)`: torchvision's area, and the order `MTCNN.detect` sorts faces by.
    var area: Float { (x2 - x1) * (y2 - y1) }
}

/// The two non-maximum suppressions of facenet-pytorch's MTCNN.
enum NonMaximumSuppression {
    /// torchvision's `nms` (the P-Net and R-Net stages): by descending score (a stable sort), each kept box
    /// suppresses the later ones whose IoU with it, over areas (x2 − x1)(y2 − y1), exceeds `threshold`. Returns the
    /// kept indices in that order.
    static func torchvision(_ boxes: [Candidate], threshold: Float) -> [Int] {
        let order = boxes.indices.sorted { boxes[$0].score > boxes[$1].score || (boxes[$0].score == boxes[$1].score
                                                                                 && $0 < $1) }
        var suppressed = [Bool](repeating: false, count: boxes.count), keep: [Int] = []
        for (k, i) in order.enumerated() where !suppressed[i] {
            keep.append(i)
            let a = boxes[i], areaA = a.area
            for j in order[(k + 1)...] where !suppressed[j] {
                let b = boxes[j]
                let w = max(0, min(a.x2, b.x2) - max(a.x1, b.x1)), h = max(0, min(a.y2, b.y2) - max(a.y1, b.y1))
                let intersection = w * h
                if intersection / (areaA + b.area - intersection) > threshold { suppressed[j] = true }
            }
        }
        return keep
    }

    /// facenet-pytorch's `nms_numpy` with method "Min" (the O-Net stage): the highest score first, overlap as
    /// intersection over the smaller area, both with MATLAB's +1 pixel sizes; boxes overlapping more than `threshold`
    /// go. Ties take the later box first, as NumPy's sort does for the few boxes this stage keeps.
    static func minimum(_ boxes: [Candidate], threshold: Float) -> [Int] {
        var remaining = boxes.indices.sorted { boxes[$0].score < boxes[$1].score
                                               || (boxes[$0].score == boxes[$1].score && $0 < $1) }
        func area(_ b: Candidate) -> Float { (b.x2 - b.x1 + 1) * (b.y2 - b.y1 + 1) }
        var keep: [Int] = []
        while let i = remaining.popLast() {
            keep.append(i)
            let a = boxes[i], areaA = area(a)
            remaining.removeAll { j in
                let b = boxes[j]
                let w = max(0, min(a.x2, b.x2) - max(a.x1, b.x1) + 1)
                let h = max(0, min(a.y2, b.y2) - max(a.y1, b.y1) + 1)
                return !(w * h / min(areaA, area(b)) <= threshold)  // NumPy keeps `o <= threshold`
            }
        }
        return keep
    }
}
