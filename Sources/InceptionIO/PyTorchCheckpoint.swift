import Foundation

/// A file of named tensors, whatever its format: what strict loading reads.
public protocol TensorFile {
    /// Every tensor's shape, by name.
    var shapes: [String: [Int]] { get }
    /// String metadata (safetensors' `__metadata__`; none in a PyTorch checkpoint).
    var metadata: [String: String] { get }
    /// A floating-point tensor's values as Float32, row-major.
    func floats(_ name: String) throws -> [Float]
}

extension SafeTensorsFile: TensorFile {
    public var shapes: [String: [Int]] { entries.mapValues(\.shape) }
}

/// Opens a weights file by its extension: `.pt`, `.pth` and `.bin` as PyTorch checkpoints, anything else as
/// safetensors.
public func openTensorFile(_ url: URL) throws -> any TensorFile {
    ["pt", "pth", "bin"].contains(url.pathExtension.lowercased())
        ? try PyTorchCheckpoint(contentsOf: url) : try SafeTensorsFile(contentsOf: url)
}

/// `torch.save`'s zip format (`<name>/data.pkl` and `<name>/data/<key>`, any member alignment; `StoredZip`) and
/// its legacy pre-1.6 format (pickles and raw storages in one stream), read through a pickle reader that runs
/// nothing (`Unpickler`). A state dict is found at the top, or under `state_dict` or `model`; DataParallel's `module.`
/// prefix is removed.
public struct PyTorchCheckpoint: TensorFile {
    private let tensors: [String: TorchPickle.TensorRef]
    /// A storage's bytes by key, read when a tensor of it is asked for (slices of the mapped file).
    private let storage: @Sendable (String) throws -> Data
    public let metadata: [String: String] = [:]
    public var shapes: [String: [Int]] { tensors.mapValues(\.size) }

    public init(contentsOf url: URL) throws {
        let head: Data
        do { head = try FileInput.read(url, maximumBytes: .max, mapped: true) } catch {
            throw PyTorchError.unreadable(path: url.path, reason: error.description)
        }
        do { try self.init(head) } catch PyTorchError.noStateDictPickle {
            throw PyTorchError.unreadable(path: url.path, reason: "no data.pkl in the archive")
        } catch let error as PyTorchError {
            throw PyTorchError.inFile(path: url.path, error)
        }
    }

    /// A checkpoint's bytes (a mapped file: tensors are read from it when asked for).
    public init(_ head: Data) throws {
        if head.first == 0x80 {  // a pickle's PROTO: the legacy format
            (tensors, storage) = try Self.legacy(head)
            return
        }
        let archive = try StoredZip(head)
        guard let pickle = archive.members.values.filter({ $0.name.hasSuffix("data.pkl") })
            .min(by: { $0.name < $1.name }) else { throw PyTorchError.noStateDictPickle }
        let prefix = String(pickle.name.dropLast("data.pkl".count))
        tensors = try Unpickler.load(try archive.contents(pickle)) { try TorchPickle.stateDict($0) }
        var members: [String: StoredZip.Member] = [:]
        for key in Set(tensors.values.map(\.key)) {
            guard let member = archive.members[prefix + "data/" + key] else { throw PyTorchError.missingStorage(key) }
            members[key] = member
        }
        let (shared, found) = (UncheckedZip(archive), members)
        storage = { key in
            guard let member = found[key] else { throw PyTorchError.missingStorage(key) }
            return try shared.archive.contents(member)
        }
    }

    /// The legacy format: the magic number, the format version and the system's description, each pickled; the
    /// object; the sorted storage keys; then each storage as its element count (8 bytes, little-endian) and its
    /// bytes.
    static func legacy(_ data: Data) throws -> ([String: TorchPickle.TensorRef], @Sendable (String) throws -> Data) {
        let (tensors, keys, end) = try Unpickler.load(data, count: 5) { values, end in
            guard case let .bytes(magic) = values[0], magic == Data([0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A,
                                                                     0xA8, 0x50, 0x19]),
                  case .int(1001) = values[1], case let .list(keys) = values[4] else {
                throw PyTorchError.malformed("not torch.save's legacy format")
            }
            let names = keys.items.compactMap { if case let .string(key) = $0 { key } else { nil } }
            return (try TorchPickle.stateDict(values[3]), names, end)
        }
        let types = Dictionary(tensors.values.map { ($0.key, $0.storageType) }) { a, _ in a }
        var ranges: [String: Range<Int>] = [:], cursor = end
        for key in keys {
            guard let type = types[key] else {
                throw PyTorchError.malformed("storage \(key) of no tensor in the state dict")
            }
            let element = TorchPickle.elementSizes[String(type.split(separator: ".").last ?? "")] ?? 1
            guard data.endIndex - cursor >= 8 else { throw PyTorchError.missingStorage(key) }
            let count = data[cursor..<cursor + 8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let (bytes, overflow) = Int(clamping: count).multipliedReportingOverflow(by: element)
            guard !overflow, data.endIndex - cursor - 8 >= bytes else { throw PyTorchError.missingStorage(key) }
            ranges[key] = (cursor + 8)..<(cursor + 8 + bytes)
            cursor += 8 + bytes
        }
        let (shared, found) = (UncheckedData(data), ranges)
        return (tensors, { key in
            guard let range = found[key] else { throw PyTorchError.missingStorage(key) }
            return shared.data[range]
        })
    }

    public func floats(_ name: String) throws -> [Float] {
        guard let t = tensors[name] else { throw PyTorchError.missingTensor(name) }
        let dtype = String(t.storageType.split(separator: ".").last ?? "")
        let element = TorchPickle.elementSizes[dtype] ?? 0
        guard ["FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage"].contains(dtype) else {
            throw PyTorchError.notFloatingPoint(name: name, dtype: dtype)
        }
        let storage = try self.storage(t.key)
        let count = t.size.reduce(1, *)  // bounded when the pickle was read
        // The furthest element the view reaches must lie inside the storage (overflow counts as beyond).
        var last = t.offset, overflow = false
        for (d, s) in zip(t.size, t.stride) where d > 0 {
            let (step, o1) = (d - 1).multipliedReportingOverflow(by: s)
            let (sum, o2) = last.addingReportingOverflow(step)
            (last, overflow) = (sum, overflow || o1 || o2)
        }
        guard count == 0 || (!overflow && last < storage.count / element) else {
            throw PyTorchError.malformed("tensor '\(name)' reaches beyond its storage")
        }
        return storage.withUnsafeBytes { raw in
            Self.gather(t, count: count).map { Self.value(raw, at: $0 * element, dtype: dtype) }
        }
    }

    /// IEEE binary16 → Float (written out: `Float16` is missing on Intel Macs).
    static func halfToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16, exponent = Int(h >> 10 & 0x1F), mantissa = UInt32(h & 0x3FF)
        switch exponent {
        case 0: return Float(sign: sign == 0 ? .plus : .minus, exponent: -24, significand: Float(mantissa))
        case 31: return Float(bitPattern: sign | 0x7F80_0000 | mantissa << 13)
        default: return Float(bitPattern: sign | UInt32(exponent + 112) << 23 | mantissa << 13)
        }
    }

    /// The storage index of each element of the view, in row-major order.
    static func gather(_ t: TorchPickle.TensorRef, count: Int) -> [Int] {
        var indices = [Int](), position = [Int](repeating: 0, count: t.size.count)
        indices.reserveCapacity(count)
        for _ in 0..<count {
            indices.append(t.offset + zip(position, t.stride).reduce(0) { $0 + $1.0 * $1.1 })
            var axis = t.size.count - 1
            while axis >= 0 {
                position[axis] += 1
                if position[axis] < t.size[axis] { break }
                position[axis] = 0
                axis -= 1
            }
        }
        return indices
    }

    static func value(_ raw: UnsafeRawBufferPointer, at offset: Int, dtype: String) -> Float {
        switch dtype {
        case "DoubleStorage":
            return Float(Double(bitPattern: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)))
        case "HalfStorage": return halfToFloat(raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
        case "BFloat16Storage":
            return Float(bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self)) << 16)
        default: return Float(bitPattern: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
        }
    }
}

/// The archive over a memory-mapped file, read only (from several threads at once while a model loads).
private final class UncheckedZip: @unchecked Sendable {
    let archive: StoredZip
    init(_ archive: StoredZip) { self.archive = archive }
}

/// A memory-mapped file, read only.
private final class UncheckedData: @unchecked Sendable {
    let data: Data
    init(_ data: Data) { self.data = data }
}
