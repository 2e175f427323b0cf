import Foundation

// libFuzzer entry: unpickle arbitrary bytes as a PyTorch checkpoint's data.pkl, then read the state dict out of it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = try? Unpickler.load(Data(bytes: data, count: size)) { try TorchPickle.stateDict($0) }
    return 0
}
