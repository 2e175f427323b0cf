import Foundation
import ZIPFoundation

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

/// `torch.save`'s zip format (`<name>/data.pkl` and `<name>/data/<key>`, any member alignment), read through a
/// pickle reader that runs nothing (`Unpickler`). A state dict is found at the top, or under `state_dict` or
/// `model`; DataParallel's `module.` prefix is removed.
public struct PyTorchCheckpoint: TensorFile {
    private let tensors: [String: TorchPickle.TensorRef]
    /// Each storage's archive member, read when a tensor of it is asked for (one at a time in memory).
    private let storages: [String: Entry]
    private let archive: Archive
    /// The archive reads through one file handle: the loader asks for tensors from several threads at once.
    private let reading = NSLock()
    public let metadata: [String: String] = [:]
    public var shapes: [String: [Int]] { tensors.mapValues(\.size) }

    public init(contentsOf url: URL) throws {
        let archive: Archive
        do {
            archive = try Archive(url: url, accessMode: .read)
        } catch {
            throw PyTorchError.unreadable(path: url.path, reason: "not a zip archive (\(error))")
        }
        guard let pickle = archive.first(where: { $0.path.hasSuffix("data.pkl") && $0.type == .file }) else {
            throw PyTorchError.unreadable(path: url.path, reason: "no data.pkl in the archive")
        }
        let prefix = String(pickle.path.dropLast("data.pkl".count))
        tensors = try Unpickler.load(try Self.read(archive, pickle)) { try TorchPickle.stateDict($0) }
        var storages: [String: Entry] = [:]
        for key in Set(tensors.values.map(\.key)) {
            guard let entry = archive[prefix + "data/" + key] else { throw PyTorchError.missingStorage(key) }
            storages[key] = entry
        }
        (self.storages, self.archive) = (storages, archive)
    }

    /// Largest member read: a state dict's storage is a few hundred MB; a zip bomb must not take the memory.
    static let maximumMember = 4 << 30

    /// A member's bytes, checked against its CRC-32; refused past its declared size or `maximumMember` (the
    /// declared size is not trusted for an allocation).
    static func read(_ archive: Archive, _ entry: Entry) throws -> Data {
        let limit = min(Int(clamping: entry.uncompressedSize), maximumMember)
        var data = Data()
        do {
            _ = try archive.extract(entry, skipCRC32: false) { chunk in
                guard data.count + chunk.count <= limit else {
                    throw PyTorchError.malformed("\(entry.path) is larger than it says")
                }
                data.append(chunk)
            }
        } catch let error as PyTorchError {
            throw error
        } catch {
            throw PyTorchError.malformed("cannot extract \(entry.path): \(error)")
        }
        return data
    }

    public func floats(_ name: String) throws -> [Float] {
        guard let t = tensors[name] else { throw PyTorchError.missingTensor(name) }
        let dtype = String(t.storageType.split(separator: ".").last ?? "")
        let element = TorchPickle.elementSizes[dtype] ?? 0
        guard ["FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage"].contains(dtype) else {
            throw PyTorchError.notFloatingPoint(name: name, dtype: dtype)
        }
        guard let entry = storages[t.key] else { throw PyTorchError.missingStorage(t.key) }
        let storage = try reading.withLock { try Self.read(archive, entry) }
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
