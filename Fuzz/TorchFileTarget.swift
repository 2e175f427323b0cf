import Foundation

// libFuzzer entry: arbitrary bytes as a whole PyTorch checkpoint — the zip container (StoredZip: end records,
// central directory, ZIP64 fields, local headers, CRC-32s) or the legacy stream — then every tensor read out of
// it, as strict loading would.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let file = try? PyTorchCheckpoint(Data(bytes: data, count: size)) else { return 0 }
    for name in file.shapes.keys.sorted() { _ = try? file.floats(name) }
    return 0
}
