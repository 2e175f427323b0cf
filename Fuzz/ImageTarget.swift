import Foundation

// libFuzzer entry: decode arbitrary bytes as JPEG or PNG (bounded to 4 Mpixel so the fuzzer is not slowed by
// legitimately huge images), then resample and crop what decodes.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let image = try? RGBImage(decoding: Data(bytes: data, count: size), maximumPixels: 4_000_000) else { return 0 }
    let small = image.resized(width: 7, height: 5)
    _ = small.cropped(left: 1, top: 1, width: 5, height: 3)
    return 0
}
