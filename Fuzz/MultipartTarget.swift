import Foundation

// libFuzzer entry: the first byte picks a boundary length, the next bytes are the boundary, the rest is a
// multipart/form-data body, as `inception serve` receives it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let length = min(Int(data[0]) % 72, size - 1)
    let boundary = String(decoding: UnsafeBufferPointer(start: data + 1, count: length), as: UTF8.self)
    let body = Data(bytes: data + 1 + length, count: size - 1 - length)
    guard let parsed = try? Multipart.boundary(contentType: "multipart/form-data; boundary=\(boundary)") else { return 0 }
    if let parts = try? Multipart.parts(of: body, boundary: parsed) {
        // Every part's body lies inside the request body.
        precondition(parts.allSatisfy { $0.body.count <= body.count })
        _ = Multipart.upload(in: parts)
    }
    return 0
}
