import Foundation

// libFuzzer entry: parse arbitrary bytes as an .npy file.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = try? NPY.read(Data(bytes: data, count: size))
    return 0
}
