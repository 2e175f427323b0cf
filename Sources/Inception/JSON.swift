import Foundation

/// JSON text for the command line's `--json` and the server's answers. A non-finite number (NaN, ±infinity) has
/// no JSON spelling, and Foundation's serialiser fails on one with an error naming its own domain; here each becomes
/// `null`, so encoding never fails on a value.
package enum JSON {
    package static func data(_ object: Any, pretty: Bool = false) throws -> Data {
        let options: JSONSerialization.WritingOptions = pretty ? [.prettyPrinted, .sortedKeys] : [.sortedKeys]
        return try JSONSerialization.data(withJSONObject: finite(object), options: options)
    }

    /// `object` with every non-finite Float or Double replaced by null.
    static func finite(_ object: Any) -> Any {
        switch object {
        case let value as Double: return value.isFinite ? value : NSNull()
        case let value as Float: return value.isFinite ? value : NSNull()
        case let array as [Any]: return array.map(finite)
        case let dictionary as [String: Any]: return dictionary.mapValues(finite)
        default: return object
        }
    }
}
