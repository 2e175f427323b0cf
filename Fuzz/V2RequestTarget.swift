import Foundation

// libFuzzer entry: an Open Inference (KServe V2) request body as `inception serve` receives it. The first byte says
// whether the body has binary data: 0 — all JSON; otherwise the next two bytes are Inference-Header-Content-Length.
// A request is refused with one line, or its tensors agree with their shapes: never a trap, never more memory than
// a few times the body.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 3 else { return 0 }
    let headerLength = data[0] == 0 ? nil : Int(data[1]) | Int(data[2]) << 8
    let body = Data(bytes: data + 3, count: size - 3)
    guard let request = try? OpenInference.parse(body, headerLength: headerLength) else { return 0 }
    for input in request.inputs {
        let count = input.shape.reduce(1, *)
        switch input.payload {
        case let .floats(values): precondition(values.count == count && input.datatype == "FP32")
        case let .bytes(values): precondition(values.count == count && input.datatype == "BYTES")
        }
    }
    // The number reader agrees with strtod wherever a number parsed.
    body.withUnsafeBytes { raw in
        let bytes = raw.assumingMemoryBound(to: UInt8.self)
        var start = 0
        while start < bytes.count {
            var end = start
            while end < bytes.count, (0x2B...0x39).contains(bytes[end]) || bytes[end] | 0x20 == 0x65 { end += 1 }
            if end > start, let text = String(bytes: bytes[start..<end], encoding: .utf8),
               text.range(of: #"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$"#, options: .regularExpression) != nil {
                let slice = UnsafeBufferPointer(rebasing: bytes[start..<end])
                let fast = DecimalText.float(slice), exact = Float(strtod(text, nil))
                precondition(fast.bitPattern == exact.bitPattern || (fast.isNaN && exact.isNaN), "\(text)")
            }
            start = end + 1
        }
    }
    return 0
}
