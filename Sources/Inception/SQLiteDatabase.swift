internal import CSQLite
import Foundation

/// The little of SQLite's C API the face gallery needs: statements with bound values, rows read by column, one
/// transaction at a time; every failure is a `FaceGalleryError` with SQLite's message and the file's path.
final class SQLiteDatabase {
    enum Value { case integer(Int), real(Double), text(String), blob(Data) }

    private let handle: OpaquePointer
    let path: String

    init(path: String, create: Bool) throws {
        var db: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX
        let status = sqlite3_open_v2(path, &db, flags, nil)
        guard status == SQLITE_OK, let db else {
            let reason = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close(db)
            throw FaceGalleryError(create ? "cannot open or create the gallery \(path): \(reason)"
                                   : "cannot open the gallery \(path): \(reason) (enroll faces into it first)")
        }
        (handle, self.path) = (db, path)
        sqlite3_busy_timeout(handle, 5000)
        try execute("PRAGMA foreign_keys = ON")
    }

    deinit { sqlite3_close(handle) }

    var lastRowID: Int { Int(sqlite3_last_insert_rowid(handle)) }

    /// Runs statements that return nothing.
    func execute(_ sql: String) throws {
        guard sqlite3_exec(handle, sql, nil, nil, nil) == SQLITE_OK else { throw failure() }
    }

    /// Runs one statement with `values` bound, ignoring any rows.
    func run(_ sql: String, _ values: [Value] = []) throws {
        _ = try rows(sql, values) { _ in () }
    }

    /// Each row of one statement with `values` bound, through `read`.
    func rows<T>(_ sql: String, _ values: [Value] = [], _ read: (Row) throws -> T) throws -> [T] {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(handle, sql, -1, &statement, nil) == SQLITE_OK, let statement else {
            throw failure()
        }
        defer { sqlite3_finalize(statement) }
        for (i, value) in values.enumerated() { try bind(value, at: Int32(i + 1), statement) }
        var results: [T] = []
        while true {
            let status = sqlite3_step(statement)
            if status == SQLITE_DONE { return results }
            guard status == SQLITE_ROW else { throw failure() }
            results.append(try read(Row(statement: statement)))
        }
    }

    /// `body` inside one transaction: committed when it returns, rolled back when it throws.
    func transaction(_ body: () throws -> Void) throws {
        try execute("BEGIN IMMEDIATE")
        do {
            try body()
            try execute("COMMIT")
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    private func bind(_ value: Value, at index: Int32, _ statement: OpaquePointer) throws {
        // SQLITE_TRANSIENT: SQLite copies the bytes before the call returns.
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        let status: Int32
        switch value {
        case let .integer(v): status = sqlite3_bind_int64(statement, index, Int64(v))
        case let .real(v): status = sqlite3_bind_double(statement, index, v)
        case let .text(v): status = sqlite3_bind_text(statement, index, v, -1, transient)
        case let .blob(v):
            status = v.withUnsafeBytes {
                sqlite3_bind_blob(statement, index, $0.baseAddress, Int32($0.count), transient)
            }
        }
        guard status == SQLITE_OK else { throw failure() }
    }

    private func failure() -> FaceGalleryError {
        FaceGalleryError("the gallery \(path): \(String(cString: sqlite3_errmsg(handle)))")
    }

    /// A result row, read by column index.
    struct Row {
        let statement: OpaquePointer
        func integer(_ i: Int32) -> Int { Int(sqlite3_column_int64(statement, i)) }
        func real(_ i: Int32) -> Double { sqlite3_column_double(statement, i) }
        func text(_ i: Int32) -> String { sqlite3_column_text(statement, i).map { String(cString: $0) } ?? "" }
        /// The column's bytes, valid only inside `body`.
        func withBlob<T>(_ i: Int32, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
            let count = Int(sqlite3_column_bytes(statement, i))
            return try body(UnsafeRawBufferPointer(start: sqlite3_column_blob(statement, i), count: count))
        }
        func blob(_ i: Int32) -> Data {
            let count = Int(sqlite3_column_bytes(statement, i))
            guard count > 0, let bytes = sqlite3_column_blob(statement, i) else { return Data() }
            return Data(bytes: bytes, count: count)
        }
    }
}
