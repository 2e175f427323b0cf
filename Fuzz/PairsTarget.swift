import Foundation

// libFuzzer entry: a pairs file as `inception verify --pairs` reads it, in one piece and in pieces split where the
// first byte says. Never a trap; the same pairs (or the same refusal) however the file is split; every image path
// inside the image folder, one level down.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let split = Int(data[0]) + 1
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let whole = Result { () throws -> [FacePair] in
        var reader = PairsFile.Reader(images: "/faces")
        try reader.feed(bytes)
        return try reader.finish()
    }
    let pieces = Result { () throws -> [FacePair] in
        var reader = PairsFile.Reader(images: "/faces")
        for start in stride(from: 0, to: bytes.count, by: split) {
            try reader.feed(bytes[start..<min(bytes.count, start + split)])
        }
        return try reader.finish()
    }
    switch (whole, pieces) {
    case let (.success(a), .success(b)):
        precondition(a == b, "the pairs depend on how the file was split")
        for pair in a {
            for path in [pair.first, pair.second] {
                // By bytes: a name may start with a combining mark, which joins "/" into one Character.
                let parts = path.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
                    .map { String(decoding: $0, as: UTF8.self) }
                precondition(parts.count == 4 && parts[1] == "faces" && !parts[2].isEmpty && parts[2] != ".."
                             && parts[2] != ".", "\(path) is not inside the image folder")
            }
        }
    case let (.failure(a), .failure(b)):
        precondition("\(a)" == "\(b)", "the refusal depends on how the file was split")
    default:
        preconditionFailure("one reading failed and the other did not")
    }
    return 0
}
