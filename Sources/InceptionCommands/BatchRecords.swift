import Foundation
import Inception
import InceptionIO

/// What the ranks of a `BatchJob` send rank 0: rows of floats as their bytes, and results as JSON whose floats
/// travel as their bit patterns (exact, whatever a decimal rendering would round).
enum BatchRecords {
    static func bytes(_ values: [Float]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

    static func floats(_ bytes: [UInt8]) -> [Float] {
        [Float](unsafeUninitializedCapacity: bytes.count / 4) { buffer, count in
            bytes.withUnsafeBytes { _ = memcpy(buffer.baseAddress!, $0.baseAddress!, $0.count / 4 * 4) }
            count = bytes.count / 4
        }
    }

    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] { Array(try JSONEncoder().encode(value)) }

    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws -> T {
        try JSONDecoder().decode(type, from: Data(bytes))
    }
}

/// A prediction between ranks.
struct PredictionRecord: Codable {
    let index: Int, label: String, wordNetID: String?, bits: UInt32

    init(_ p: Prediction) {
        (index, label, wordNetID, bits) = (p.index, p.label, p.wordNetID, p.probability.bitPattern)
    }

    var prediction: Prediction {
        Prediction(index: index, label: label, wordNetID: wordNetID, probability: Float(bitPattern: bits))
    }
}

/// An image's outcome between ranks: its predictions (or, in `eval`, its scored top five and label), or why it was
/// skipped.
struct ImageRecord: Codable {
    let path: String
    var label: Int?
    var predictions: [PredictionRecord]?
    var error: String?
}

extension NPY.Writer {
    /// Rows from `row` on: in place in a file, appended to a stream (whose rows must then come in order).
    func put(_ values: [Float], atRow row: Int) throws {
        if isPositional { try write(values, atRow: row) } else { try append(values) }
    }
}

extension BatchJob {
    /// The .npy of `shape` that rank 0 writes (nil on the other ranks). Under `mpirun` an output that is a stream
    /// (standard output, a pipe, a device) is refused: the ranks' rows reach rank 0 out of order and are placed in a
    /// file.
    func writer(shape: [Int], to path: String) throws -> NPY.Writer? {
        var info = stat()
        let stream = FileOutput.ownStream(path) != nil
            || (stat(path, &info) == 0 && [S_IFIFO, S_IFCHR].contains(info.st_mode & S_IFMT))
        if ranks > 1 && stream {
            throw CLIError("--output \(path) is a stream; under mpirun the rows are placed in a file")
        }
        return isRoot ? try NPY.Writer(shape: shape, to: path) : nil
    }
}
