import Foundation

// libFuzzer entry: parse arbitrary bytes as a safetensors file and read every tensor it declares.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let file = try? SafeTensorsFile(data: Data(bytes: data, count: size)) else { return 0 }
    for name in file.entries.keys { _ = try? file.floats(name) }
    return 0
}
