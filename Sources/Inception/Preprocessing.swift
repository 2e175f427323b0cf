import Foundation
// The fuzzers compile this file together with InceptionIO's sources, as one module (scripts/fuzz.sh).
#if canImport(InceptionIO)
import InceptionIO
#endif

/// The transform a model's weights were trained with, carried with the model so that nobody has to guess it
/// (the most common way other implementations fail their users). For timm's weights it is timm's eval
/// transform exactly: resize the short side to ⌊size / crop_pct⌋ with Pillow's antialiased bicubic, centre-crop
/// `size × size`, scale to [0, 1], subtract `mean`, divide by `std`.
public struct Preprocessing: Sendable, Equatable {
    public var inputSize: Int
    /// timm's `crop_pct`: the fraction of the resized short side that the centre crop keeps.
    public var cropFraction: Double
    public var interpolation: ResampleFilter
    /// Per RGB channel, in units of the [0, 1] scaled image.
    public var mean: [Float]
    public var std: [Float]

    public init(inputSize: Int, cropFraction: Double, interpolation: ResampleFilter = .bicubic, mean: [Float],
                std: [Float]) {
        (self.inputSize, self.cropFraction, self.interpolation, self.mean, self.std) =
            (inputSize, cropFraction, interpolation, mean, std)
    }

    /// timm `inception_v4.tf_in1k`: 299, crop_pct 0.875 (resize to 341), mean = std = 0.5.
    public static let inceptionV4 = Preprocessing(inputSize: 299, cropFraction: 0.875, mean: [0.5, 0.5, 0.5],
                                                  std: [0.5, 0.5, 0.5])
    /// timm `inception_resnet_v2.tf_in1k`: 299, crop_pct 0.8975 (resize to 333), mean = std = 0.5.
    public static let inceptionResNetV2 = Preprocessing(inputSize: 299, cropFraction: 0.8975, mean: [0.5, 0.5, 0.5],
                                                        std: [0.5, 0.5, 0.5])
    /// facenet's "fixed image standardization" (x − 127.5) / 128 on a 160×160 aligned face crop; the image is
    /// resized (short side to 160) and centre-cropped to square first.
    public static let faceNet = Preprocessing(inputSize: 160, cropFraction: 1,
                                              mean: [127.5 / 255, 127.5 / 255, 127.5 / 255],
                                              std: [128 / 255, 128 / 255, 128 / 255])

    /// The size the short side is resized to: ⌊inputSize / cropFraction⌋, as timm.
    public func resizeSize(inputSize: Int) -> Int { Int((Double(inputSize) / cropFraction).rounded(.down)) }

    /// The resized and centre-cropped image, before normalisation (what torchvision's Resize and CenterCrop give).
    /// Only the pixels the crop keeps are computed, so an extreme aspect ratio (1 × 100 000) costs no more memory
    /// than a photo: the resize's output would be 341 × 34 100 000, the crop is 299 × 299.
    public func crop(_ image: RGBImage, inputSize: Int? = nil) -> RGBImage {
        let size = inputSize ?? self.inputSize
        let resize = ShortSideResize(image, shortSide: resizeSize(inputSize: size), filter: interpolation)
        let centre = Self.fiveCorners(width: resize.width, height: resize.height, size: size)[4]
        return resize.region(left: centre.left, top: centre.top, width: size, height: size)
    }

    /// torchvision's FiveCrop of a `width × height` image: the top-left corners of the four corner crops and the
    /// centre crop, `size × size` (the centre rounded with Python's round(), half to even).
    static func fiveCorners(width: Int, height: Int, size: Int) -> [(left: Int, top: Int)] {
        let (right, bottom) = (width - size, height - size)
        let centre = (Int((Double(right) / 2).rounded(.toNearestOrEven)),
                      Int((Double(bottom) / 2).rounded(.toNearestOrEven)))
        return [(0, 0), (right, 0), (0, bottom), (right, bottom), centre]
    }

    /// The normalised `size × size × 3` pixels (NHWC, one image).
    public func apply(_ image: RGBImage, inputSize: Int? = nil) -> [Float] {
        normalized(crop(image, inputSize: inputSize))
    }

    /// (pixel / 255 − mean) / std per channel, HWC; `mirrored` flips left–right (training augmentation).
    public func normalized(_ image: RGBImage, mirrored: Bool = false) -> [Float] {
        var out = [Float](repeating: 0, count: image.pixels.count)
        for y in 0..<image.height {
            for x in 0..<image.width {
                let source = (y * image.width + (mirrored ? image.width - 1 - x : x)) * 3
                for c in 0..<3 {
                    out[(y * image.width + x) * 3 + c] = (Float(image.pixels[source + c]) / 255 - mean[c]) / std[c]
                }
            }
        }
        return out
    }

    /// A batch as the network takes it: NHWC `[n, size, size, 3]`.
    public func batch(_ images: [RGBImage], inputSize: Int? = nil) -> Tensor {
        let size = inputSize ?? self.inputSize
        return Tensor(shape: [images.count, size, size, 3], scalars: images.flatMap { apply($0, inputSize: size) })
    }
}

/// An image resized so its short side is `shortSide`, the long side scaled and truncated (torchvision's Resize), of
/// which only the regions asked for are computed: a thin image's whole resize could be millions of pixels long (a
/// 1 × 100 000 PNG at a short side of 470 is 47 million rows), its crops are a few hundred pixels square.
struct ShortSideResize {
    let image: RGBImage, width: Int, height: Int, filter: ResampleFilter

    init(_ image: RGBImage, shortSide: Int, filter: ResampleFilter) {
        let (w, h) = (image.width, image.height)
        (width, height) = w <= h ? (shortSide, Int(Double(shortSide * h) / Double(w)))
            : (Int(Double(shortSide * w) / Double(h)), shortSide)
        (self.image, self.filter) = (image, filter)
    }

    /// How far the square of the short side can slide along the long side, and its centred offset.
    var slack: Int { abs(width - height) }
    var centre: Int { Int((Double(slack) / 2).rounded(.toNearestOrEven)) }

    /// The `width × height` region at (`left`, `top`) of the resized image, bit for bit as resizing and cropping.
    func region(left: Int, top: Int, width w: Int, height h: Int) -> RGBImage {
        if (width, height) == (image.width, image.height) { return image.cropped(left: left, top: top, width: w,
                                                                                 height: h) }
        return image.resized(width: width, height: height, filter: filter,
                             keeping: .init(left: left, top: top, width: w, height: h))
    }

    /// The square of side the short side, `offset` along the long side.
    func square(offset: Int) -> RGBImage {
        let side = min(width, height)
        return width >= height ? region(left: offset, top: 0, width: side, height: side)
            : region(left: 0, top: offset, width: side, height: side)
    }
}
