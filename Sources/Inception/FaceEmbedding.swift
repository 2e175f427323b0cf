import InceptionEngine
import InceptionIO

extension InceptionModel {
    /// The embedding of each face of `image` (`embed(prepared:)` of its aligned crop at the network's input size,
    /// as facenet-pytorch's `MTCNN(image_size, margin)` then `InceptionResnetV1` compute it): `[faces, dimension]`.
    /// A face whose box holds no pixel of the image is refused.
    public func embed(faces: [Face], in image: RGBImage, margin: Int = 0,
                      threads: Int = Parallel.defaultThreads) throws -> Tensor {
        try embed(prepared: try faces.map { try prepare(face: $0, in: image, margin: margin) }, threads: threads)
    }

    /// A face's aligned crop at the network's input size, normalised as the network takes it.
    public func prepare(face: Face, in image: RGBImage, margin: Int = 0) throws -> [Float] {
        guard margin < inputSize,
              let crop = face.alignedCrop(of: image, size: inputSize, margin: margin) else {
            throw FaceDetectorError.setting("the face's box holds no pixel of the photo, or the margin is not "
                                            + "smaller than the crop")
        }
        return name.spec.preprocessing.normalized(crop)
    }
}

extension RGBImage {
    /// The image with each face's box drawn (3 pixels wide, green; the largest face's in yellow) and its five
    /// landmarks as red dots — what `inception faces detect --draw` writes.
    public func drawing(_ faces: [Face]) -> RGBImage {
        var image = self
        let thickness = max(2, min(width, height) / 300)
        for (k, face) in faces.enumerated() {
            let colour: [UInt8] = k == 0 ? [255, 220, 0] : [0, 230, 64]
            let (x1, y1, x2, y2) = (pixel(face.box.x1), pixel(face.box.y1), pixel(face.box.x2), pixel(face.box.y2))
            image.fill(x1 - thickness, y1 - thickness, x2 + thickness, y1, colour)
            image.fill(x1 - thickness, y2, x2 + thickness, y2 + thickness, colour)
            image.fill(x1 - thickness, y1, x1, y2, colour)
            image.fill(x2, y1, x2 + thickness, y2, colour)
            for point in face.landmarks {
                let (x, y) = (pixel(point.x), pixel(point.y))
                image.fill(x - thickness, y - thickness, x + thickness, y + thickness, [255, 40, 40])
            }
        }
        return image
    }

    /// A coordinate as a whole pixel, whatever the value (a box may reach far past the photo).
    private func pixel(_ v: Float) -> Int { v.isFinite ? Int(max(min(v.rounded(), 1e8), -1e8)) : 0 }

    /// Paints the rectangle of columns x0 ..< x1 and rows y0 ..< y1, clipped to the image.
    mutating func fill(_ x0: Int, _ y0: Int, _ x1: Int, _ y1: Int, _ colour: [UInt8]) {
        let (left, right) = (max(0, min(x0, width)), max(0, min(x1, width)))
        let (top, bottom) = (max(0, min(y0, height)), max(0, min(y1, height)))
        guard left < right else { return }
        for y in top..<bottom {
            for x in left..<right {
                let p = (y * width + x) * 3
                (pixels[p], pixels[p + 1], pixels[p + 2]) = (colour[0], colour[1], colour[2])
            }
        }
    }
}
