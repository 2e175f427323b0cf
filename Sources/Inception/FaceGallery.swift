internal import CSQLite
import Foundation
import InceptionEngine

/// People's faces in an SQLite file: each enrolled face's embedding (L2-normalised, Float32), its box and the
/// photo it came from; and an exact search of a probe's embeddings against all of them, one matrix product through
/// the engine's GEMM. Distances are `compare`'s: the squared Euclidean distance of unit vectors, 2 − 2 cos.
public final class FaceGallery {
    /// A stored face's source and owner.
    public struct Entry: Sendable, Equatable {
        public let person: String, photo: String
        public let box: FaceBox
    }

    /// A person the probe resembles: the distance to their closest face, and which face that was.
    public struct Match: Sendable, Equatable {
        public let person: String
        public let distance: Double
        public let entry: Entry
    }

    let database: SQLiteDatabase
    /// The network whose embeddings the gallery holds, and their width.
    public let model: String, dimension: Int

    /// Opens (or, with `create`, makes) the gallery at `path` for embeddings of `model` (`dimension` wide); a gallery
    /// made for another model or width is refused.
    public init(path: String, model: String, dimension: Int, create: Bool) throws {
        database = try SQLiteDatabase(path: path, create: create)
        try database.execute("""
            CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS photos(id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, person TEXT NOT NULL,
                size INTEGER NOT NULL, modified REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS faces(id INTEGER PRIMARY KEY,
                photo INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE, person TEXT NOT NULL,
                x1 REAL, y1 REAL, x2 REAL, y2 REAL, probability REAL, embedding BLOB NOT NULL);
            """)
        let stored = try database.rows("SELECT key, value FROM meta") { ($0.text(0), $0.text(1)) }
        let meta = Dictionary(stored, uniquingKeysWith: { $1 })
        if let storedModel = meta["model"], let storedWidth = meta["dimension"] {
            guard storedModel == model, storedWidth == String(dimension) else {
                throw FaceGalleryError("\(path) holds \(storedModel) embeddings (\(storedWidth) wide), not \(model)'s")
            }
        } else {
            try database.run("INSERT OR REPLACE INTO meta VALUES ('model', ?), ('dimension', ?)",
                             [.text(model), .text(String(dimension))])
        }
        (self.model, self.dimension) = (model, dimension)
    }

    /// Whether `path` is stored with this size and modification time (so enrolling it again can be skipped).
    public func isStored(path: String, size: Int, modified: Double) throws -> Bool {
        try !database.rows("SELECT 1 FROM photos WHERE path = ? AND size = ? AND modified = ?",
                           [.text(path), .integer(size), .real(modified)]) { $0.integer(0) }.isEmpty
    }

    /// Stores a photo's faces for `person`, replacing what was stored for the photo before.
    public func store(path: String, person: String, size: Int, modified: Double,
                      faces: [(face: Face, embedding: [Float])]) throws {
        try database.transaction {
            try database.run("DELETE FROM faces WHERE photo IN (SELECT id FROM photos WHERE path = ?)", [.text(path)])
            try database.run("DELETE FROM photos WHERE path = ?", [.text(path)])
            try database.run("INSERT INTO photos(path, person, size, modified) VALUES (?, ?, ?, ?)",
                             [.text(path), .text(person), .integer(size), .real(modified)])
            let photo = database.lastRowID
            for (face, embedding) in faces {
                precondition(embedding.count == dimension, "an embedding of \(embedding.count), not \(dimension)")
                let unit = FaceDistance.unit(embedding).map(Float.init)
                let b = face.box
                try database.run("""
                    INSERT INTO faces(photo, person, x1, y1, x2, y2, probability, embedding)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """, [.integer(photo), .text(person), .real(Double(b.x1)), .real(Double(b.y1)),
                          .real(Double(b.x2)), .real(Double(b.y2)), .real(Double(face.probability)),
                          .blob(unit.withUnsafeBytes { Data($0) })])
            }
        }
    }

    /// How many faces and people are stored.
    public func counts() throws -> (faces: Int, people: Int) {
        let rows = try database.rows("SELECT COUNT(*), COUNT(DISTINCT person) FROM faces") {
            ($0.integer(0), $0.integer(1))
        }
        return rows.first ?? (0, 0)
    }

    /// Every stored face's id and person, and the embeddings as one row-major matrix (`ids.count × dimension`). A row
    /// whose embedding is not `dimension` Float32 values is refused, naming it.
    public func load() throws -> (ids: [Int], people: [String], embeddings: [Float]) {
        var embeddings: [Float] = [], people: [String] = []
        let ids = try database.rows("SELECT id, person, embedding FROM faces ORDER BY id") { row -> Int in
            try row.withBlob(2) { blob in
                guard blob.count == dimension * 4 else {
                    throw FaceGalleryError("face \(row.integer(0)) has \(blob.count) bytes of embedding, not "
                                           + "\(dimension * 4): the gallery is damaged")
                }
                embeddings += blob.bindMemory(to: Float.self)
            }
            people.append(row.text(1))
            return row.integer(0)
        }
        return (ids, people, embeddings)
    }

    /// The stored face `id`: its person, photo and box.
    public func entry(_ id: Int) throws -> Entry? {
        try database.rows("""
            SELECT faces.person, photos.path, x1, y1, x2, y2 FROM faces JOIN photos ON photos.id = faces.photo
            WHERE faces.id = ?
            """, [.integer(id)]) { row in
            Entry(person: row.text(0), photo: row.text(1),
                  box: FaceBox(x1: Float(row.real(2)), y1: Float(row.real(3)), x2: Float(row.real(4)),
                               y2: Float(row.real(5))))
        }.first
    }

    /// For each probe embedding, the `top` people closest to it (each by their closest face), nearest first.
    public func search(_ probes: [[Float]], top: Int, threads: Int = Parallel.defaultThreads) throws -> [[Match]] {
        let (ids, people, stored) = try load()
        guard !ids.isEmpty, !probes.isEmpty else { return probes.map { _ in [] } }
        let units = probes.flatMap { FaceDistance.unit($0).map(Float.init) }
        var dots = [Float](repeating: 0, count: probes.count * ids.count)
        units.withUnsafeBufferPointer { a in
            stored.withUnsafeBufferPointer { b in
                dots.withUnsafeMutableBufferPointer { c in
                    let x = MatrixView(rowMajor: a.baseAddress!, rows: probes.count, columns: dimension)
                    let y = MatrixView(rowMajor: b.baseAddress!, rows: ids.count, columns: dimension).transposed
                    GEMM.multiply(x, y, into: c.baseAddress!, ldc: ids.count, accumulate: false, threads: threads)
                }
            }
        }
        return try probes.indices.map { p in
            var best: [String: (distance: Double, face: Int)] = [:]
            for e in ids.indices {
                let distance = max(0, 2 - 2 * Double(dots[p * ids.count + e]))
                if best[people[e]].map({ distance < $0.distance }) ?? true { best[people[e]] = (distance, e) }
            }
            let nearest = best.sorted { ($0.value.distance, $0.key) < ($1.value.distance, $1.key) }.prefix(top)
            return try nearest.compactMap { person, found in
                try entry(ids[found.face]).map { Match(person: person, distance: found.distance, entry: $0) }
            }
        }
    }
}

public struct FaceGalleryError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
