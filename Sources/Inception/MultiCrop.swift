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
        let plain = plainViews(image, crops: crops, inputSize: inputSize).map { $0() }
        let mirrored = crops == .single ? [] : plain.map { CropView(image: $0, mirrored: true) }
        return plain.map { CropView(image: $0, mirrored: false) } + mirrored
    }

    /// The views one at a time, in `views`' order, each computed when its turn comes (a mirrored view computed
    /// again): the memory of one view, and for `twelve` and `googLeNet` of the square it is scaled from, whatever
    /// the number of views.
    public func forEachView(_ image: RGBImage, crops: CropProtocol, inputSize: Int? = nil,
                            _ body: (CropView) throws -> Void) rethrows {
        let plain = plainViews(image, crops: crops, inputSize: inputSize)
        for mirrored in [false, true] where mirrored == false || crops != .single {
            for make in plain { try body(CropView(image: make(), mirrored: mirrored)) }
        }
    }

    /// How to compute each unmirrored view, in order. Each corner is its region of the resize (bit for bit the crop
    /// of the whole resize, or of the square that holds it); a scaled view is its square resized.
    func plainViews(_ image: RGBImage, crops: CropProtocol, inputSize: Int?) -> [() -> RGBImage] {
        let size = inputSize ?? self.inputSize
        switch crops {
        case .single: return [{ crop(image, inputSize: size) }]
        case .ten, .twelve:
            let resize = ShortSideResize(image, shortSide: resizeSize(inputSize: size), filter: interpolation)
            return Self.fiveCorners(width: resize.width, height: resize.height, size: size).map { corner in
                { resize.region(left: corner.left, top: corner.top, width: size, height: size) }
            } + (crops == .twelve ? [{ scaled(resize.square(offset: resize.centre), size: size) }] : [])
        case .googLeNet:
            return [256, 288, 320, 352].flatMap { scale in
                let short = Int((Double(scale * size) / 224).rounded(.toNearestOrEven))
                let resize = ShortSideResize(image, shortSide: short, filter: interpolation)
                return [0, resize.centre, resize.slack].flatMap { offset in
                    let (left, top) = resize.width >= resize.height ? (offset, 0) : (0, offset)
                    return Self.fiveCorners(width: short, height: short, size: size).map { corner in
                        { resize.region(left: left + corner.left, top: top + corner.top, width: size, height: size) }
                    } + [{ scaled(resize.square(offset: offset), size: size) }]
                }
            }
        }
    }

    /// The normalised NHWC pixels of each view (`views`' order).
    public func apply(_ image: RGBImage, crops: CropProtocol, inputSize: Int? = nil) -> [[Float]] {
        views(image, crops: crops, inputSize: inputSize).map { normalized($0.image, mirrored: $0.mirrored) }
    }

    /// The image resized to `size × size` with the preset's filter.
    func scaled(_ image: RGBImage, size: Int) -> RGBImage {
        image.width == size && image.height == size ? image
            : image.resized(width: size, height: size, filter: interpolation)
    }
}
