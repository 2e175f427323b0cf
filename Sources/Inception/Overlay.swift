import Foundation
import InceptionIO

extension Explanation {
    /// The photo with the map over the part of it the network saw (its centre crop), as pytorch-grad-cam's
    /// `show_cam_on_image` draws it — the map through OpenCV's JET colour scale, averaged with the photo, the result
    /// divided by its maximum — the rest of the photo dimmed, and `caption` written in a band along the top. The
    /// photo keeps its aspect; one whose longer side exceeds `maximumSide` is scaled down first.
    public func overlay(on photo: RGBImage, preprocessing: Preprocessing, caption: String?,
                        maximumSide: Int = 1024) -> RGBImage {
        var image = Self.overlayPhoto(photo, maximumSide: maximumSide)
        let seen = seenRegion(width: image.width, height: image.height, preprocessing: preprocessing)
        let heat = ClassActivationMap.resized(map.map(Double.init), height: inputSize, width: inputSize,
                                              toHeight: seen.height, toWidth: seen.width)
        var blended = [Double](repeating: 0, count: seen.width * seen.height * 3)
        for y in 0..<seen.height { for x in 0..<seen.width {
            let level = Int(UInt8(clamping: Int(255 * heat[y * seen.width + x])))  // np.uint8(255 · mask)
            let colour = Self.jet(level)
            let p = ((seen.top + y) * image.width + seen.left + x) * 3
            for c in 0..<3 {
                blended[(y * seen.width + x) * 3 + c] = 0.5 * colour[c] + 0.5 * Double(image.pixels[p + c]) / 255
            }
        } }
        let top = blended.max() ?? 1
        var pixels = image.pixels.map { UInt8(Double($0) * 0.35) }
        for y in 0..<seen.height { for x in 0..<seen.width { for c in 0..<3 {
            pixels[((seen.top + y) * image.width + seen.left + x) * 3 + c] =
                UInt8(255 * blended[(y * seen.width + x) * 3 + c] / top)
        } } }
        image.pixels = pixels
        if let caption { Self.write(caption, on: &image) }
        return image
    }

    /// The photo an overlay is drawn on: `photo`, scaled down (bilinear) when its longer side exceeds `maximumSide`.
    public static func overlayPhoto(_ photo: RGBImage, maximumSide: Int = 1024) -> RGBImage {
        let longer = max(photo.width, photo.height)
        guard longer > maximumSide else { return photo }
        return photo.resized(width: max(1, photo.width * maximumSide / longer),
                             height: max(1, photo.height * maximumSide / longer), filter: .bilinear)
    }

    /// The part of a `width × height` photo that the preprocessing's centre crop keeps, in the photo's pixels.
    func seenRegion(width: Int, height: Int, preprocessing: Preprocessing) -> RGBImage.Region {
        let shorter = Double(min(width, height))
        let side = min(Int((Double(inputSize) * shorter / Double(preprocessing.resizeSize(inputSize: inputSize)))
            .rounded()), min(width, height))
        return RGBImage.Region(left: (width - side) / 2, top: (height - side) / 2, width: max(1, side),
                               height: max(1, side))
    }

    /// OpenCV's COLORMAP_JET at `level` (0…255) as RGB in [0, 1]: piecewise linear, within one level of its table.
    static func jet(_ level: Int) -> [Double] {
        let x = Double(level) / 255
        func ramp(_ a: Double, _ b: Double) -> Double {
            (min(max(min(4 * x + a, -4 * x + b), 0), 1) * 255).rounded() / 255
        }
        return [ramp(-1.5, 4.5), ramp(-0.5, 3.5), ramp(0.5, 2.5)]
    }

    /// A white `side × side` square at (left, top), clipped to the image.
    static func fill(_ image: inout RGBImage, left: Int, top: Int, side: Int) {
        for y in top..<min(top + side, image.height) {
            for x in left..<min(left + side, image.width) {
                for c in 0..<3 { image.pixels[(y * image.width + x) * 3 + c] = 255 }
            }
        }
    }

    /// Writes `text` in white on a dark band along the top of `image`, the glyphs scaled to the image's width.
    static func write(_ text: String, on image: inout RGBImage) {
        let scale = max(1, image.width / 240)
        let (advance, band) = ((BitmapFont.width + 1) * scale, (BitmapFont.height + 4) * scale)
        guard image.height > band else { return }
        let fitting = max(0, (image.width - 2 * scale) / advance)
        let shown = text.count > fitting ? String(text.prefix(max(0, fitting - 1))) + "." : text
        for y in 0..<band { for x in 0..<image.width { for c in 0..<3 {
            let p = (y * image.width + x) * 3 + c
            image.pixels[p] = UInt8(Double(image.pixels[p]) * 0.25)
        } } }
        for (i, character) in shown.enumerated() {
            for gy in 0..<BitmapFont.height {
                for gx in 0..<BitmapFont.width where BitmapFont.ink(character, x: gx, y: gy) {
                    fill(&image, left: 2 * scale + i * advance + gx * scale, top: 2 * scale + gy * scale, side: scale)
                }
            }
        }
    }
}

extension Explanation {
    /// The overlay's caption: the class's label and probability; for a similarity target, the distance `compare`
    /// reports (the squared distance of the unit embeddings, 2 − 2 cos).
    public func caption(model: InceptionModel) -> String {
        if let classIndex, let probability {
            return model.label(classIndex).name + String(format: " %.1f%%", 100 * Double(probability))
        }
        return String(format: "distance %.3f", 2 - 2 * Double(similarity ?? 0))
    }

    /// The explanation as the command line's `--json` and the server's JSON answer give it: the layer, method and
    /// target, the map at the layer's resolution and at the network input's (row-major, in [0, 1]), and the part
    /// of a `photoWidth × photoHeight` photo the network saw.
    public func record(model: InceptionModel, photoWidth: Int, photoHeight: Int) -> [String: Any] {
        let seen = seenRegion(width: photoWidth, height: photoHeight, preprocessing: model.name.spec.preprocessing)
        var record: [String: Any] = [
            "layer": layer, "method": method.rawValue,
            "layer_map": ["height": layerHeight, "width": layerWidth, "values": layerMap.map(Double.init)],
            "map": ["height": inputSize, "width": inputSize, "values": map.map(Double.init)],
            "region": ["left": seen.left, "top": seen.top, "width": seen.width, "height": seen.height],
        ]
        if let classIndex, let probability {
            let (label, wordNetID) = model.label(classIndex)
            record["target"] = ["class": classIndex, "label": label, "wordnet_id": wordNetID ?? NSNull(),
                                "probability": Double(probability)] as [String: Any]
        }
        if let similarity { record["target"] = ["similarity": Double(similarity)] }
        return record
    }

    /// The overlay of `photo` with this model's caption, as a PNG file: what `inception explain` writes and the
    /// server's `/explain` answers, byte for byte.
    public func overlayPNG(on photo: RGBImage, model: InceptionModel) throws -> Data {
        try overlay(on: photo, preprocessing: model.name.spec.preprocessing, caption: caption(model: model)).pngData()
    }
}
