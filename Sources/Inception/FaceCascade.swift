import InceptionEngine
import InceptionIO

/// One photo through MTCNN's three stages, as facenet-pytorch's `detect_face` runs them.
struct FaceCascade {
    let detector: FaceDetector
    let image: RGBImage
    let threads: Int
    /// The photo's row sums, for every resampling of every stage.
    let sums: RowSums?

    init(detector: FaceDetector, image: RGBImage, threads: Int) {
        (self.detector, self.image, self.threads) = (detector, image, threads)
        sums = RowSums(image)
    }

    /// P-Net's input is resampled and run in bands of at most this many pixels, so that memory stays bounded
    /// whatever the photo's size (a band's results are those of the whole map: its rows start on a pooling window).
    static let bandPixels = 1 << 19
    /// R-Net and O-Net run on at most this many crops at once.
    static let batch = 256

    /// Stage 1: P-Net over the image pyramid; per scale a suppression at IoU 0.5, then one across scales at 0.7,
    /// then the boxes regressed and squared.
    func proposals() throws -> [Candidate] {
        let settings = detector.settings
        let m = 12.0 / Double(settings.minimumFaceSize)
        var scales: [Double] = [], scale = m, side = Double(min(image.height, image.width)) * m
        while side >= 12 {
            scales.append(scale)
            scale *= settings.scaleFactor
            side *= settings.scaleFactor
        }
        var all: [Candidate] = []
        for scale in scales {
            let found = try proposals(height: Int(Double(image.height) * scale + 1),
                                      width: Int(Double(image.width) * scale + 1), scale: scale)
            all += NonMaximumSuppression.torchvision(found, threshold: 0.5).map { found[$0] }
        }
        return NonMaximumSuppression.torchvision(all, threshold: 0.7).map { box in
            var box = all[box]
            box.applyProposalRegression()
            box.square()
            return box
        }
    }

    /// P-Net's windows at one scale (the photo resampled to `width × height`) whose face probability reaches the
    /// first threshold, in row-major order.
    func proposals(height: Int, width: Int, scale: Double) throws -> [Candidate] {
        let shapes = detector.proposal.graph.inferShapes(n: 1, h: height, w: width)
        guard let out = shapes?[detector.proposal.graph.output] else { return [] }
        let resample = AreaResample(image: image, sums: sums, left: 0, top: 0, width: image.width,
                                    height: image.height, outWidth: width, outHeight: height)
        let bandRows = max(1, (Self.bandPixels / width - 10) / 2)
        let threshold = detector.settings.thresholds[0], s = Float(scale)
        var found: [Candidate] = [], r0 = 0
        while r0 < out.h {
            let r1 = min(out.h, r0 + bandRows)
            let rows = (2 * r0)..<(r1 == out.h ? height : 2 * r1 + 10)
            var input = Tensor(zeros: [1, rows.count, width, 3])
            input.scalars.withUnsafeMutableBufferPointer { resample.write(rows: rows, into: $0.baseAddress!) }
            let result = try detector.proposal.run(input, threads: threads).scalars
            precondition(result.count == (r1 - r0) * out.w * 6, "a P-Net band gave another size")
            for y in 0..<(r1 - r0) {
                for x in 0..<out.w {
                    let p = (y * out.w + x) * 6
                    guard result[p + 1] >= threshold else { continue }
                    let regression = SIMD4(result[p + 2], result[p + 3], result[p + 4], result[p + 5])
                    found.append(Candidate(pnetX: x, y: r0 + y, scale: s, score: result[p + 1],
                                           regression: regression))
                }
            }
            r0 = r1
        }
        return found
    }

    /// Stage 2: R-Net on 24 × 24 crops; boxes above the second threshold, suppressed at IoU 0.7, regressed,
    /// squared.
    func refined(_ boxes: [Candidate]) throws -> [Candidate] {
        let kept = try scored(boxes, by: detector.refinement, side: 24, channels: 6, threshold: 1).map(\.box)
        return NonMaximumSuppression.torchvision(kept, threshold: 0.7).map { i in
            var b = kept[i]
            b.applyRegression()
            b.square()
            return b
        }
    }

    /// Stage 3: O-Net on 48 × 48 crops; boxes above the third threshold with their landmarks, regressed, then
    /// suppressed at 0.7 of the smaller box.
    func finished(_ boxes: [Candidate]) throws -> [Candidate] {
        var kept: [Candidate] = []
        for (box, out) in try scored(boxes, by: detector.output, side: 48, channels: 16, threshold: 2) {
            var b = box
            let (w, h) = (b.x2 - b.x1 + 1, b.y2 - b.y1 + 1)
            b.landmarks = (0..<5).map { w * out[6 + $0] + b.x1 - 1 } + (0..<5).map { h * out[11 + $0] + b.y1 - 1 }
            b.applyRegression()
            kept.append(b)
        }
        return NonMaximumSuppression.minimum(kept, threshold: 0.7).map { kept[$0] }
    }

    /// The boxes whose crops the network scores above the stage's threshold (strictly, as facenet-pytorch), with
    /// the network's score and regression, and its whole output.
    func scored(_ boxes: [Candidate], by network: CompiledGraph, side: Int, channels: Int, threshold stage: Int) throws
        -> [(box: Candidate, output: [Float])]
    {
        let (inside, outputs) = try run(network, on: boxes, side: side, channels: channels)
        return zip(inside, outputs).compactMap { box, out in
            guard out[1] > detector.settings.thresholds[stage] else { return nil }
            var b = box
            (b.score, b.regression) = (out[1], SIMD4(out[2], out[3], out[4], out[5]))
            return (b, out)
        }
    }

    /// The boxes with pixels inside the photo, and the network's outputs on their crops resampled to
    /// `side × side` (boxes wholly outside are dropped: facenet-pytorch would misalign its outputs there).
    func run(_ network: CompiledGraph, on boxes: [Candidate], side: Int, channels: Int) throws
        -> ([Candidate], [[Float]])
    {
        let inside = boxes.compactMap { b in b.pixelsInside(width: image.width, height: image.height).map { (b, $0) } }
        var outputs: [[Float]] = []
        for start in stride(from: 0, to: inside.count, by: Self.batch) {
            let chunk = inside[start..<min(inside.count, start + Self.batch)]
            var input = Tensor(zeros: [chunk.count, side, side, 3])
            input.scalars.withUnsafeMutableBufferPointer { buffer in
                for (k, (_, r)) in chunk.enumerated() {
                    let crop = AreaResample(image: image, sums: sums, left: r.left, top: r.top, width: r.width,
                                            height: r.height, outWidth: side, outHeight: side)
                    crop.write(rows: 0..<side, into: buffer.baseAddress! + k * side * side * 3)
                }
            }
            let result = try network.run(input, threads: threads).scalars
            outputs += (0..<chunk.count).map { Array(result[($0 * channels)..<(($0 + 1) * channels)]) }
        }
        return (inside.map(\.0), outputs)
    }
}
