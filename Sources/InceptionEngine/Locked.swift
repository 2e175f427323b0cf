import Foundation

/// A value behind a lock. Built on `NSLock` (a pthread mutex) rather than `Synchronization.Mutex`, whose Linux
/// futex implementation ThreadSanitizer cannot see, so that sanitizer runs check this locking too.
package final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()

    package init(_ value: Value) { self.value = value }

    package func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
