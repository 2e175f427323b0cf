import Foundation

// The fuzzers compile this file with OpenInference.swift alone (scripts/fuzz.sh, target v2request): Foundation
// only.

/// Decimal numbers (JSON's grammar, already checked) to binary floating point.
package enum DecimalText {
    /// Powers of ten that a Double holds exactly.
    private static let powers: [Double] = (0...22).map { pow(10, Double($0)) }

    /// Correctly rounded (strtod).
    package static func double(_ text: UnsafeBufferPointer<UInt8>) -> Double {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: text.count + 1) { buffer in
            for i in 0..<text.count { buffer[i] = CChar(bitPattern: text[i]) }
            buffer[text.count] = 0
            return strtod(buffer.baseAddress!, nil)
        }
    }

    /// `Float(double(text))`, bit for bit. The mantissa's first 19 digits times an exact power of ten is within
    /// 2⁻⁵⁰ of the value; unless that is as close to the midpoint between two Floats (where the rounding could go
    /// either way), its Float is the answer. Otherwise, and outside the exact powers, strtod.
    package static func float(_ text: UnsafeBufferPointer<UInt8>) -> Float {
        var i = 0, negative = false, mantissa: UInt64 = 0, digits = 0, exponent = 0, dropped = false
        if text[0] == UInt8(ascii: "-") { negative = true; i = 1 }
        var fraction = false
        while i < text.count, text[i] | 0x20 != UInt8(ascii: "e") {  // digits and at most one point (checked)
            if text[i] == UInt8(ascii: ".") {
                fraction = true
            } else if digits < 19 {
                mantissa = mantissa * 10 + UInt64(text[i] - 0x30)
                if mantissa > 0 { digits += 1 }
                if fraction { exponent -= 1 }
            } else {
                if !fraction { exponent += 1 }
                dropped = dropped || text[i] != 0x30
            }
            i += 1
        }
        if i < text.count {  // the exponent part: e[+-]digits
            var j = i + 1, sign = 1, value = 0
            if text[j] == UInt8(ascii: "-") { sign = -1; j += 1 } else if text[j] == UInt8(ascii: "+") { j += 1 }
            while j < text.count { value = min(value * 10 + Int(text[j] - 0x30), 100_000); j += 1 }
            exponent += sign * value
        }
        if mantissa == 0 && !dropped { return negative ? -0.0 : 0 }
        guard abs(exponent) <= 22 else { return Float(double(text)) }
        let scaled = exponent >= 0 ? Double(mantissa) * powers[exponent] : Double(mantissa) / powers[-exponent]
        let approximate = negative ? -scaled : scaled
        let nearest = Float(approximate)
        guard nearest.isNormal, clearOfMidpoints(approximate, nearest) else { return Float(double(text)) }
        return nearest
    }

    /// Whether `x` is farther than 2⁻⁴⁸ (relative) from both midpoints around its Float `f`: then any value within
    /// 2⁻⁵⁰ of `x`, and that value's Double, round to `f` too.
    private static func clearOfMidpoints(_ x: Double, _ f: Float) -> Bool {
        let margin = abs(x) * 0x1p-48
        let below = (Double(f) + Double(f.nextDown)) / 2, above = (Double(f) + Double(f.nextUp)) / 2
        return abs(x - below) > margin && abs(x - above) > margin
    }
}
