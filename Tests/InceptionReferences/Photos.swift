import Foundation
import InceptionEngine
import InceptionIO
import InceptionTestSupport

/// The real photos of the reference folder (every format variant), by name.
package enum Photos {
    package static let images = ["rocket.jpg", "chelsea_baseline.jpg", "coffee_progressive.jpg", "astronaut_gray.jpg",
                         "motorcycle_cmyk.jpg", "chelsea_rgb.png", "coffee_gray.png", "astronaut_gray_alpha.png",
                         "motorcycle_rgba.png", "chelsea_palette.png", "coffee_rgb16.png", "coffee_gray16.png",
                         "chelsea_thin_tall.png", "chelsea_thin_wide.png"]

    package static func imageURL(_ name: String) throws -> URL {
        let url = References.directory.appendingPathComponent("images").appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else { throw References.Missing(path: url.path) }
        return url
    }

    package static func reference(_ name: String) throws -> Tensor {
        let (shape, values) = try NPY.read(contentsOf: try imageURL(name))
        return Tensor(shape: shape, scalars: values)
    }

    package static func stem(_ name: String) -> String { (name as NSString).deletingPathExtension }
}
