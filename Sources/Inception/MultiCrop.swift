import Foundation
#if canImport(InceptionIO)
import InceptionIO
#endif

/// The evaluation protocols of the paper's tables (arXiv 1602.07261, Tables 2–5): the views of one image that are
/// scored together, their softmax probabilities averaged (docs/evaluation.md maps each table row to a command).
public enum CropProtocol: Int, Sendable, CaseIterable {
    /// The preset's centre crop: the short side resized to ⌊size / crop_pct⌋, the centre `size × size` (timm's eval).
    case single = 1
    /// Krizhevsky et al. 2012: from the image resized as for `single`, the four corners and the centre at the input
    /// size, each also mirrored.
    case ten = 10
    /// `ten` and the centre square of the same resized image scaled to the input size, also mirrored — the paper does
    /// not define its 12 crops; docs/evaluation.md says what was found and why this reading.
    case twelve = 12
    /// GoogLeNet's (Szegedy et al. 2014, §6): the short side resized to 256, 288, 320 and 352 (scaled by input size /
    /// 224); at each scale three squares along the long side (left, centre, right, or top, centre, bottom); in each
    /// square the four corners, the centre and the square scaled to the input size; each also mirrored.
    case googLeNet = 144
}

/// One view of an image under a protocol: its pixels at the input size, and whether the network sees it mirrored.
public struct CropView: Sendable {
    public let image: RGBImage
    public let mirrored: Bool
}

extension Preprocessing {
    /// The views `crops` scores, in a fixed order: every unmirrored view, then the same views mirrored. Unmirrored:
    /// `single` the centre crop; `ten` top-left, top-right, bottom-left, bottom-right, centre (torchvision's
    /// FiveCrop); `twelve` those and the square; `googLeNet` scale by scale (smallest first), square by square
    /// (left or top first), the five crops then the square.
    public func views(_ image: RGBImage, crops: CropProtocol, inputSize: Int? = nil) -> [CropView] {
        let size = inputSize ?? self.inputSize
        let plain: [RGBImage]
        switch crops {
        case .single: return [CropView(image: crop(image, inputSize: size), mirrored: false)]
        case .ten, .twelve:
            let resized = Self.resized(image, shortSide: resizeSize(inputSize: size), filter: interpolation)
            plain = Self.fiveCrops(resized, size: size)
                + (crops == .twelve ? [scaledSquare(resized, offset: Self.centre(resized), size: size)] : [])
        case .googLeNet:
            plain = [256, 288, 320, 352].flatMap { scale in
                let short = Int((Double(scale * size) / 224).rounded(.toNearestOrEven))
                let resized = Self.resized(image, shortSide: short, filter: interpolation)
                let slack = max(resized.width, resized.height) - short
                return [0, Int((Double(slack) / 2).rounded(.toNearestOrEven)), slack].flatMap { offset in
                    let square = Self.square(resized, offset: offset)
                    return Self.fiveCrops(square, size: size) + [scaledSquare(square, offset: 0, size: size)]
                }
            }
        }
        return plain.map { CropView(image: $0, mirrored: false) } + plain.map { CropView(image: $0, mirrored: true) }
    }

    /// The normalised NHWC pixels of each view (`views`' order).
    public func apply(_ image: RGBImage, crops: CropProtocol, inputSize: Int? = nil) -> [[Float]] {
        views(image, crops: crops, inputSize: inputSize).map { normalized($0.image, mirrored: $0.mirrored) }
    }

    /// The image with its short side `shortSide`, the long side scaled as torchvision's Resize does (truncated).
    static func resized(_ image: RGBImage, shortSide: Int, filter: ResampleFilter) -> RGBImage {
        let (w, h) = (image.width, image.height)
        let (newW, newH) = w <= h ? (shortSide, Int(Double(shortSide * h) / Double(w)))
            : (Int(Double(shortSide * w) / Double(h)), shortSide)
        return (newW, newH) == (w, h) ? image : image.resized(width: newW, height: newH, filter: filter)
    }

    /// torchvision's FiveCrop: the four corners and the centre, `size × size`.
    static func fiveCrops(_ image: RGBImage, size: Int) -> [RGBImage] {
        let (right, bottom) = (image.width - size, image.height - size)
        // torchvision's centre crop rounds with Python's round(), half to even.
        let centre = (Int((Double(right) / 2).rounded(.toNearestOrEven)),
                      Int((Double(bottom) / 2).rounded(.toNearestOrEven)))
        return [(0, 0), (right, 0), (0, bottom), (right, bottom), centre].map {
            image.cropped(left: $0.0, top: $0.1, width: size, height: size)
        }
    }

    /// The offset of the centre square along the long side (half to even, as torchvision's centre crop).
    static func centre(_ image: RGBImage) -> Int {
        Int((Double(abs(image.width - image.height)) / 2).rounded(.toNearestOrEven))
    }

    /// The square of side the short side, `offset` along the long side.
    static func square(_ image: RGBImage, offset: Int) -> RGBImage {
        let side = min(image.width, image.height)
        return image.width >= image.height ? image.cropped(left: offset, top: 0, width: side, height: side)
            : image.cropped(left: 0, top: offset, width: side, height: side)
    }

    /// The square at `offset`, resized to `size × size` with the preset's filter.
    func scaledSquare(_ image: RGBImage, offset: Int, size: Int) -> RGBImage {
        let square = Self.square(image, offset: offset)
        return square.width == size ? square : square.resized(width: size, height: size, filter: interpolation)
    }
}
