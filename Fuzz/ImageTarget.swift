import Foundation

// libFuzzer entry: decode arbitrary bytes as JPEG or PNG (bounded to 4 Mpixel and 2 s so the fuzzer is not slowed by
// legitimately huge images), then resample and crop what decodes, and run it through the model's preprocessing.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    guard let image = try? RGBImage(decoding: bytes, maximumPixels: 4_000_000, timeLimit: .seconds(2)) else { return 0 }
    let small = image.resized(width: 7, height: 5)
    _ = small.cropped(left: 1, top: 1, width: 5, height: 3)
    precondition(Preprocessing.inceptionV4.apply(image).count == 299 * 299 * 3)
    return 0
}
