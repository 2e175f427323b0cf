import Foundation

// libFuzzer entry: treat the bytes as an HTTP answer to the Hub's HEAD request — a status code in the first two
// bytes, then "Name: value" lines — and derive the file's metadata from it, as a download would.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    let status = 100 + (Int(data[0]) << 8 | Int(data[1])) % 500
    let text = String(decoding: UnsafeBufferPointer(start: data + 2, count: size - 2), as: UTF8.self)
    var headers: [String: String] = [:]
    for line in text.split(separator: "\n") {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[String(line[..<colon])] = String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
    }
    let url = URL(string: "http://127.0.0.1/timm/inception_v4.tf_in1k/resolve/main/model.safetensors")!
    if let metadata = try? HubClient.metadata(status: status, headers: headers, url: url) {
        // What the cache would do with it: these become path components and must stay inside the cache.
        precondition(!metadata.etag.contains("/") && !metadata.commit.contains("/") && !metadata.etag.contains(".."))
    }
    return 0
}
