import Foundation
import Inception
import InceptionEngine
import InceptionIO

/// Inception-style training augmentation (TF-slim's `distorted_bounding_box_crop`, torchvision's
/// `RandomResizedCrop`): a random crop covering 8–100 % of the image's area with aspect ratio in [3/4, 4/3]
/// (log-uniform), resized to the input size, flipped left–right half the time, then the model's normalisation.
public struct Augmentation: Sendable, Equatable, Codable {
    public var scale: ClosedRange<Double> = 0.08...1
    public var ratio: ClosedRange<Double> = (3.0 / 4)...(4.0 / 3)
    public var flip = true

    public init() {}

    /// The normalised `size × size × 3` pixels; every random choice comes from `rng`.
    package func apply(_ image: RGBImage, size: Int, preprocessing: Preprocessing, rng: inout SplitMix64) -> [Float] {
        let (w, h) = (Double(image.width), Double(image.height))
        var crop = (left: 0, top: 0, width: image.width, height: image.height)
        var found = false
        for _ in 0..<10 {
            let area = w * h * Double(rng.uniform(Float(scale.lowerBound), Float(scale.upperBound)))
            let aspect = exp(Double(rng.uniform(Float(log(ratio.lowerBound)), Float(log(ratio.upperBound)))))
            let cw = Int((area * aspect).squareRoot().rounded()), ch = Int((area / aspect).squareRoot().rounded())
            if cw > 0 && ch > 0 && cw <= image.width && ch <= image.height {
                let left = Int(rng.uniform(0, 1) * Float(image.width - cw + 1)) ,
                    top = Int(rng.uniform(0, 1) * Float(image.height - ch + 1))
                crop = (min(left, image.width - cw), min(top, image.height - ch), cw, ch)
                found = true
                break
            }
        }
        if !found {  // the central square, as torchvision's fallback
            let side = min(image.width, image.height)
            crop = ((image.width - side) / 2, (image.height - side) / 2, side, side)
        }
        let out = image.cropped(left: crop.left, top: crop.top, width: crop.width, height: crop.height)
            .resized(width: size, height: size, filter: .bilinear)
        return preprocessing.normalized(out, mirrored: flip && rng.uniform(0, 1) < 0.5)
    }
}
