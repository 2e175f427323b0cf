import Foundation

// libFuzzer entry: images of any shape — 1 × 100 000, 100 000 × 1, anything in between up to 4 Mpixel — through
// each model's preprocessing (resize of the region the centre crop keeps, then normalisation) and the training
// augmentation's resize. The first 6 bytes pick the width and height; the rest fill the pixels.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 6 else { return 0 }
    let width = 1 + (Int(data[0]) | Int(data[1]) << 8 | Int(data[2] & 1) << 16) % 120_000
    let height = 1 + (Int(data[3]) | Int(data[4]) << 8 | Int(data[5] & 1) << 16) % 120_000
    guard width * height <= 4_000_000 else { return 0 }
    var pixels = [UInt8](repeating: 0, count: width * height * 3)
    for i in pixels.indices where size > 6 { pixels[i] = data[6 + i % (size - 6)] }
    let image = RGBImage(width: width, height: height, pixels: pixels)
    for preprocessing in [Preprocessing.inceptionV4, .inceptionResNetV2, .faceNet] {
        let side = preprocessing.inputSize
        let values = preprocessing.apply(image)
        precondition(values.count == side * side * 3 && values.allSatisfy(\.isFinite))
    }
    let small = image.resized(width: 7, height: 5, filter: .bilinear)
    precondition(small.pixels.count == 7 * 5 * 3)
    return 0
}
