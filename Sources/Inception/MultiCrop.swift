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
            let resize = ShortSideResize(image, shortSide: resizeSize(inputSize: size), filter: interpolation)
            plain = Self.fiveCorners(width: resize.width, height: resize.height, size: size).map {
                resize.region(left: $0.left, top: $0.top, width: size, height: size)
            } + (crops == .twelve ? [scaled(resize.square(offset: resize.centre), size: size)] : [])
        case .googLeNet:
            plain = [256, 288, 320, 352].flatMap { scale in
                let short = Int((Double(scale * size) / 224).rounded(.toNearestOrEven))
                let resize = ShortSideResize(image, shortSide: short, filter: interpolation)
                return [0, resize.centre, resize.slack].flatMap { offset in
                    let square = resize.square(offset: offset)
                    return Self.fiveCorners(width: short, height: short, size: size).map {
                        square.cropped(left: $0.left, top: $0.top, width: size, height: size)
                    } + [scaled(square, size: size)]
                }
            }
        }
        return plain.map { CropView(image: $0, mirrored: false) } + plain.map { CropView(image: $0, mirrored: true) }
    }

    /// The normalised NHWC pixels of each view (`views`' order).
    public func apply(_ image: RGBImage, crops: CropProtocol, inputSize: Int? = nil) -> [[Float]] {
        views(image, crops: crops, inputSize: inputSize).map { normalized($0.image, mirrored: $0.mirrored) }
    }

    /// torchvision's FiveCrop of a `width × height` image: the top-left corners of the four corner crops and the
    /// centre crop, `size × size` (the centre rounded with Python's round(), half to even).
    static func fiveCorners(width: Int, height: Int, size: Int) -> [(left: Int, top: Int)] {
        let (right, bottom) = (width - size, height - size)
        let centre = (Int((Double(right) / 2).rounded(.toNearestOrEven)),
                      Int((Double(bottom) / 2).rounded(.toNearestOrEven)))
        return [(0, 0), (right, 0), (0, bottom), (right, bottom), centre]
    }

    /// The image resized to `size × size` with the preset's filter.
    func scaled(_ image: RGBImage, size: Int) -> RGBImage {
        image.width == size && image.height == size ? image
            : image.resized(width: size, height: size, filter: interpolation)
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
