import Foundation

/// The zip archives `torch.save` writes: members stored uncompressed (at any alignment), ZIP64 past 4 GB, read from
/// memory (a mapped file) with every offset and size checked against the bytes there before it is used, so that a
/// hostile archive can only be refused. ZIPFoundation was used before: fuzzing found archives on which it traps
/// (an offset past `Int64.max` converted to `off_t`), which a checkpoint reader must never do.
struct StoredZip {
    struct Member {
        let name: String
        /// The member's bytes in the archive.
        let range: Range<Int>
        let crc32: UInt32
    }

    let data: Data
    /// Members by name (the first of a name wins).
    let members: [String: Member]

    init(_ data: Data) throws {
        self.data = data
        let (count, directory) = try Self.centralDirectory(data)
        var members: [String: Member] = [:], cursor = directory.lowerBound
        for _ in 0..<count {
            let (member, next) = try Self.member(data, at: cursor, within: directory)
            if members[member.name] == nil { members[member.name] = member }
            cursor = next
        }
        self.members = members
    }

    /// A member's bytes, checked against its CRC-32.
    func contents(_ member: Member) throws -> Data {
        let bytes = data[member.range]
        guard CRC32.checksum(bytes) == member.crc32 else {
            throw PyTorchError.malformed("\(member.name) does not match its CRC-32")
        }
        return bytes
    }

    // MARK: The format (APPNOTE.TXT 6.3: 4.3.12 central directory, 4.3.14–16 end records, 4.5.3 ZIP64 extra field)

    /// The number of entries and the central directory's bytes, from the end record (and its ZIP64 form).
    private static func centralDirectory(_ data: Data) throws -> (count: Int, range: Range<Int>) {
        let base = data.startIndex, end = data.endIndex
        // The end record is 22 bytes and a comment of at most 65,535; search back for its signature.
        var at = end - 22
        while at >= max(base, end - 22 - 0xFFFF), try u32(data, at) != 0x0605_4B50 { at -= 1 }
        guard at >= max(base, end - 22 - 0xFFFF) else { throw PyTorchError.malformed("not a zip archive") }
        var count = Int(try u16(data, at + 10)), size = Int(try u32(data, at + 12))
        var offset = Int(try u32(data, at + 16))
        if count == 0xFFFF || size == 0xFFFF_FFFF || offset == 0xFFFF_FFFF {
            // ZIP64: a locator just before the end record points at the ZIP64 end record.
            guard at - 20 >= base, try u32(data, at - 20) == 0x0706_4B50 else {
                throw PyTorchError.malformed("a ZIP64 archive without its locator")
            }
            let record = try position(try u64(data, at - 12), in: data)
            guard try u32(data, record) == 0x0606_4B50 else { throw PyTorchError.malformed("no ZIP64 end record") }
            (count, size, offset) = (try length(try u64(data, record + 32)), try length(try u64(data, record + 40)),
                                     try length(try u64(data, record + 48)))
        }
        let start = try position(UInt64(offset), in: data)
        guard size <= end - start, count <= size / 46 else {
            throw PyTorchError.malformed("a central directory larger than the archive")
        }
        return (count, start..<(start + size))
    }

    /// The central directory entry at `at` and where the next begins.
    private static func member(_ data: Data, at: Int, within directory: Range<Int>) throws -> (Member, Int) {
        guard directory.upperBound - at >= 46, try u32(data, at) == 0x0201_4B50 else {
            throw PyTorchError.malformed("a damaged central directory")
        }
        let method = try u16(data, at + 10), crc = try u32(data, at + 16)
        var compressed = UInt64(try u32(data, at + 20)), size = UInt64(try u32(data, at + 24))
        let nameLength = Int(try u16(data, at + 28)), extraLength = Int(try u16(data, at + 30))
        let commentLength = Int(try u16(data, at + 32))
        var local = UInt64(try u32(data, at + 42))
        let next = at + 46 + nameLength + extraLength + commentLength
        guard next <= directory.upperBound else { throw PyTorchError.malformed("a damaged central directory") }
        let name = String(decoding: data[(at + 46)..<(at + 46 + nameLength)], as: UTF8.self)
        // ZIP64 sizes and offset replace the fields that hold 0xFFFFFFFF, in this order.
        var extra = at + 46 + nameLength
        while extra + 4 <= at + 46 + nameLength + extraLength {
            let (id, length) = (try u16(data, extra), Int(try u16(data, extra + 2)))
            var field = extra + 4
            func wide(_ value: UInt64) throws -> UInt64 {
                guard id == 1, value == 0xFFFF_FFFF else { return value }
                guard field + 8 <= extra + 4 + length else { throw PyTorchError.malformed("a short ZIP64 field") }
                defer { field += 8 }
                return try u64(data, field)
            }
            (size, compressed, local) = (try wide(size), try wide(compressed), try wide(local))
            extra += 4 + length
        }
        guard method == 0, compressed == size else {
            throw PyTorchError.malformed("\(name.prefix(100)) is compressed; torch.save stores its members")
        }
        let header = try position(local, in: data)
        guard try u32(data, header) == 0x0403_4B50 else { throw PyTorchError.malformed("a damaged local header") }
        let start = header + 30 + Int(try u16(data, header + 26)) + Int(try u16(data, header + 28))
        let length = try self.length(size)
        guard start <= data.endIndex, length <= data.endIndex - start else {
            throw PyTorchError.malformed("\(name.prefix(100)) reaches past the end of the archive")
        }
        return (Member(name: name, range: start..<(start + length), crc32: crc), next)
    }

    /// An offset from the archive's start, refused unless it lies inside it.
    private static func position(_ offset: UInt64, in data: Data) throws -> Int {
        guard offset < UInt64(data.count) else { throw PyTorchError.malformed("an offset past the end of the archive") }
        return data.startIndex + Int(offset)
    }

    private static func length(_ value: UInt64) throws -> Int {
        guard value <= UInt64(Int32.max) * 64 else { throw PyTorchError.malformed("a size beyond any checkpoint") }
        return Int(value)
    }

    private static func u16(_ data: Data, _ at: Int) throws -> UInt16 {
        UInt16(truncatingIfNeeded: try le(data, at, 2))
    }

    private static func u32(_ data: Data, _ at: Int) throws -> UInt32 {
        UInt32(truncatingIfNeeded: try le(data, at, 4))
    }

    private static func u64(_ data: Data, _ at: Int) throws -> UInt64 { try le(data, at, 8) }

    /// A little-endian integer of `count` bytes at `at`, refused outside the data.
    private static func le(_ data: Data, _ at: Int, _ count: Int) throws -> UInt64 {
        guard at >= data.startIndex, at <= data.endIndex - count else {
            throw PyTorchError.malformed("the archive ends early")
        }
        return data[at..<(at + count)].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }
}

/// CRC-32 (ISO-HDLC, zip's), eight bytes per step.
enum CRC32 {
    static let tables: [[UInt32]] = {
        var tables = [[UInt32]](repeating: [UInt32](repeating: 0, count: 256), count: 8)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = c & 1 == 1 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
            tables[0][i] = c
        }
        for t in 1..<8 {
            for i in 0..<256 { tables[t][i] = tables[t - 1][i] >> 8 ^ tables[0][Int(tables[t - 1][i] & 0xFF)] }
        }
        return tables
    }()

    static func checksum(_ data: Data) -> UInt32 {
        let t = tables.flatMap { $0 }
        return data.withUnsafeBytes { raw -> UInt32 in
            var crc: UInt32 = 0xFFFF_FFFF, i = 0
            t.withUnsafeBufferPointer { t in
                while i + 8 <= raw.count {
                    let a = crc ^ raw.loadUnaligned(fromByteOffset: i, as: UInt32.self).littleEndian
                    let b = raw.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self).littleEndian
                    crc = t[7 * 256 + Int(a & 0xFF)] ^ t[6 * 256 + Int(a >> 8 & 0xFF)]
                        ^ t[5 * 256 + Int(a >> 16 & 0xFF)] ^ t[4 * 256 + Int(a >> 24)]
                        ^ t[3 * 256 + Int(b & 0xFF)] ^ t[2 * 256 + Int(b >> 8 & 0xFF)]
                        ^ t[1 * 256 + Int(b >> 16 & 0xFF)] ^ t[Int(b >> 24)]
                    i += 8
                }
                while i < raw.count {
                    crc = t[Int((crc ^ UInt32(raw[i])) & 0xFF)] ^ crc >> 8
                    i += 1
                }
            }
            return ~crc
        }
    }
}
