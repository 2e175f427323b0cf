import Foundation
import InceptionServer
import Testing

/// The Open Inference request reader (`OpenInference.parse` over `JSONScanner`): JSON numbers read straight into
/// Float storage, bit for bit what `Float(strtod(text))` gives (glibc's correctly rounded reader, the reference),
/// and the same tensor whether a client sends it as JSON or as binary data.
@Suite struct JSONTensorTests {
    static func float(_ text: String) -> Float {
        Array(text.utf8).withUnsafeBufferPointer { DecimalText.float($0) }
    }

    /// Texts of every kind a client writes: Python's repr of a float32's double (tritonclient's JSON), fixed and
    /// scientific notation of several lengths, long mantissas, large and tiny exponents, subnormals, overflow; and
    /// decimals a hair either side of the midpoint between two Floats, where a reader that is only nearly right
    /// rounds the wrong way.
    static func texts(count: Int) -> [String] {
        var rng = SystemRandomNumberGenerator(), texts: [String] = []
        for i in 0..<count {
            let f = Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &rng))
            guard f.isFinite else { continue }
            let x = Double(f)
            switch i % 6 {
            case 0: texts.append("\(x)")
            case 1: texts.append(String(format: "%.9g", x))
            case 2: texts.append(String(format: "%.*e", Int32.random(in: 1...25, using: &rng), x))
            case 3:
                texts.append(String(format: "%.*f", Int32.random(in: 0...30, using: &rng), Double.random(in: -2...2)))
            case 4:
                let mid = (x + Double(f.nextUp)) / 2, nudge = mid.ulp * Double(Int.random(in: -2...2, using: &rng))
                texts.append(String(format: "%.25e", mid + nudge))
            default: texts.append(String(format: "%.17g", Double.random(in: -1...1) * 1e-3))
            }
        }
        return texts + ["0", "-0", "1", "-1", "0.1", "1e22", "1e23", "123456789012345678901234567890", "1e-46",
                        "1.4e-45", "1e-38", "1.1754943e-38", "3.4028235e38", "3.4028236e38", "1e39", "-1e400",
                        "0.30000001192092896", "2.5e-3", "16777217", "0.000000000000000000000000001"]
    }

    @Test func numbersReadAsStrtodReadsThem() {
        for text in Self.texts(count: 300_000) {
            let expected = Float(strtod(text, nil))
            let got = Self.float(text)
            if got.bitPattern != expected.bitPattern {
                Issue.record("\(text): \(got) (\(got.bitPattern)), strtod \(expected) (\(expected.bitPattern))")
                return
            }
        }
    }

    /// Real photos' pixels and random floats, as tritonclient writes them with binary_data=False (json.dumps of
    /// each float32 as a Python float) and with binary data: the same tensor, bit for bit.
    @Test func jsonAndBinaryGiveTheSameTensor() throws {
        let values = (0..<3 * 17 * 17).map { _ in Float.random(in: -3...3) } + [0, -0.0, 1, -1, .ulpOfOne]
        let shape = [8, values.count / 8]
        let numbers = values.map { "\(Double($0))" }.joined(separator: ", ")
        let json = Data("""
            {"inputs": [{"name": "input", "shape": \(shape), "datatype": "FP32", "data": [\(numbers)]}]}
            """.utf8)
        let header = Data("""
            {"inputs": [{"name": "input", "shape": \(shape), "datatype": "FP32", \
            "parameters": {"binary_data_size": \(4 * values.count)}}]}
            """.utf8)
        var binary = header
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { binary.append(contentsOf: $0) } }
        func floats(_ request: OpenInference.Request) -> [UInt32] {
            guard case let .floats(x) = request.inputs[0].payload else { return [] }
            return x.map(\.bitPattern)
        }
        let fromJSON = try OpenInference.parse(json, headerLength: nil)
        let fromBinary = try OpenInference.parse(binary, headerLength: header.count)
        #expect(floats(fromJSON) == values.map(\.bitPattern))
        #expect(floats(fromBinary) == values.map(\.bitPattern))
    }

    /// Malformed JSON is one line naming the fault and where; data past the declared shape stops the reader there.
    @Test(arguments: [
        ("{\"inputs\": [", "the inference request is not valid JSON: the text ends where a value was expected"),
        ("{\"inputs\": [{\"name\": \"a\"}]} x", "the inference request is not valid JSON: text after the JSON value"),
        ("{\"inputs\": [{\"name\": \"input\", \"data\": [01]}]}", "a number with a leading zero"),
        ("{\"inputs\": [{\"name\": \"input\", \"data\": [1.]}]}", "a number without digits after its point"),
        ("{\"a\": \"\u{1}\"}", "a control character inside a string"),
        ("{\"a\": \"\\q\"}", "an unknown escape"),
        ("{\"inputs\": [{\"name\": \"input\", \"shape\": [2], \"datatype\": \"FP32\", \"data\": [1, 2, 3]}]}",
         "input 'input': more data than its shape"),
        ("{\"inputs\": [{\"name\": \"input\", \"shape\": [2], \"datatype\": \"FP32\", \"data\": [1, true]}]}",
         "input 'input': FP32 data must be numbers"),
        ("{\"inputs\": [{\"name\": \"image\", \"shape\": [2], \"datatype\": \"BYTES\", \"data\": [\"a\", 2]}]}",
         "input 'image': BYTES data must be strings"),
        ("{\"inputs\": [{\"name\": \"input\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": "
            + String(repeating: "[", count: 65) + "1" + String(repeating: "]", count: 65) + "}]}",
         "nested more than 64 deep"),
    ])
    func malformedJSONIsNamed(_ body: String, _ fragment: String) {
        do {
            _ = try OpenInference.parse(Data(body.utf8), headerLength: nil)
            Issue.record("\(body): no error")
        } catch {
            #expect("\(error)".contains(fragment), "\(body): \(error)")
        }
    }

    /// Strings come back as their UTF-8 bytes, escapes and surrogate pairs resolved.
    @Test func stringsAreTheirBytes() throws {
        let body = #"{"inputs": [{"name": "image", "shape": [3], "datatype": "BYTES", "#
            + #""data": ["a\"b\\c\/\n", "\u00e9\ud83d\ude00", "\ud800x"]}]}"#
        let request = try OpenInference.parse(Data(body.utf8), headerLength: nil)
        guard case let .bytes(values) = request.inputs[0].payload else { Issue.record("not bytes"); return }
        #expect(values.map { String(decoding: $0, as: UTF8.self) } == ["a\"b\\c/\n", "é😀", "\u{FFFD}x"])
    }

    /// What the server writes reads back through an independent parser (Foundation's) as what it was given: strings
    /// with quotes, backslashes, control characters and non-ASCII text, and Floats of every exponent bit for bit
    /// (the shortest digits of a Float, read as a Double and rounded to Float, give the Float back).
    @Test func writtenJSONReadsBack() throws {
        var rng = SystemRandomNumberGenerator()
        let pieces = ["a", "\"", "\\", "\n", "\u{01}", "\u{1F}", "é", "猫", "🐈", " ", "/", "\t"]
        let strings = (0..<500).map { _ in
            (0..<Int.random(in: 0...12, using: &rng)).map { _ in pieces.randomElement()! }.joined()
        }
        let floats = (0..<100_000).map { _ in Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &rng)) }
            .filter(\.isFinite) + [0, -0, .leastNonzeroMagnitude, .greatestFiniteMagnitude, 0.1]
        var json = JSONWriter()
        json.raw("{")
        json.key("strings")
        json.array(strings) { $0.string($1) }
        json.raw(",")
        json.key("floats")
        json.array(floats) { $0.number($1) }
        json.raw("}")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.bytes)) as? [String: Any])
        #expect(object["strings"] as? [String] == strings)
        let read = try #require(object["floats"] as? [NSNumber]).map { Float($0.doubleValue) }
        #expect(read.map(\.bitPattern) == floats.map(\.bitPattern))
    }
}
