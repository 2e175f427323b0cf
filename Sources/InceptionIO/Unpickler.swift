import Foundation

/// A pickle reader that runs nothing: it implements the opcodes `torch.save` writes (protocols 2 to 5) and builds
/// values itself; a global is only ever a name, and calling one (`REDUCE`) is allowed for an allow-list — PyTorch's
/// tensor and parameter rebuild functions and `collections.OrderedDict` — and refused, naming it, for anything else.
/// Every read is bounds-checked and every opcode consumes input, so time and memory are linear in the file.
struct Unpickler {
    /// Lists and dicts are objects, as in Python: appending to one the memo also holds changes both, in place (so
    /// that a long run of single appends stays linear).
    final class List { var items: [Value] = [] }
    final class Dict { var pairs: [(Value, Value)] = [] }

    indirect enum Value {
        case none, bool(Bool), int(Int), float(Double), string(String), bytes(Data)
        /// A tuple and how deeply tuples nest in it (1: none inside), bounded by `maximumDepth`.
        case tuple([Value], depth: Int), list(List), dict(Dict)
        case global(String)
        /// A persistent id: `('storage', storage type, key, location, size)` in a PyTorch checkpoint.
        case storage(type: String, key: String)
        case tensor(TorchPickle.TensorRef)
    }

    private let data: Data
    private var cursor: Int
    private var stack: [Value] = []
    /// Every list and dict made, to empty them at the end (see `load`).
    private var lists: [List] = [], dicts: [Dict] = []
    /// Where each open MARK is in `stack`.
    private var marks: [Int] = []
    private var memo: [Int: Value] = [:]

    init(_ data: Data) { (self.data, self.cursor) = (data, data.startIndex) }

    /// `body` of the pickled object. A pickle can make a list or dict contain itself; once `body` is done every
    /// list and dict is emptied, so that such cycles are not leaked.
    static func load<T>(_ data: Data, _ body: (Value) throws -> T) throws -> T {
        try load(data, count: 1) { values, _ in try body(values[0]) }
    }

    /// `body` of `count` pickles written one after the other (PyTorch's legacy format), and the offset where the
    /// last ends. Storages are recorded by key with their type as their persistent ids are read.
    static func load<T>(_ data: Data, count: Int, _ body: ([Value], _ end: Int) throws -> T) throws -> T {
        var unpickler = Unpickler(data)
        defer {
            for list in unpickler.lists { list.items = [] }
            for dict in unpickler.dicts { dict.pairs = [] }
        }
        var values: [Value] = []
        for _ in 0..<count {
            (unpickler.stack, unpickler.marks, unpickler.memo) = ([], [], [:])
            values.append(try unpickler.run())
        }
        return try body(values, unpickler.cursor)
    }

    private mutating func byte() throws -> UInt8 {
        guard cursor < data.endIndex else { throw PyTorchError.malformed("the pickle ends early") }
        defer { cursor += 1 }
        return data[cursor]
    }

    private mutating func bytes(_ count: Int) throws -> Data {
        guard count >= 0, data.endIndex - cursor >= count else { throw PyTorchError.malformed("the pickle ends early") }
        defer { cursor += count }
        return data[cursor..<cursor + count]
    }

    /// A little-endian unsigned integer of `count` bytes.
    private mutating func unsigned(_ count: Int) throws -> Int {
        let raw = try bytes(count)
        let value = raw.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard value <= UInt64(Int.max) else { throw PyTorchError.malformed("a length beyond any file") }
        return Int(value)
    }

    private mutating func line() throws -> String {
        guard let end = data[cursor...].firstIndex(of: 0x0A) else {
            throw PyTorchError.malformed("the pickle ends early")
        }
        defer { cursor = end + 1 }
        return String(decoding: data[cursor..<end], as: UTF8.self)
    }

    private mutating func pop() throws -> Value {
        guard stack.count > (marks.last ?? 0), let value = stack.popLast() else {
            throw PyTorchError.malformed("the pickle's stack is empty")
        }
        return value
    }

    /// The values above the topmost mark, which is removed.
    private mutating func popToMark() throws -> [Value] {
        guard let mark = marks.popLast(), mark <= stack.count else {
            throw PyTorchError.malformed("the pickle has no mark")
        }
        defer { stack.removeSubrange(mark...) }
        return Array(stack[mark...])
    }

    private mutating func run() throws -> Value {
        while true {
            let opcode = try byte()
            if opcode == 0x2E { return try pop() }  // STOP
            try step(opcode)
        }
    }

    private mutating func step(_ opcode: UInt8) throws {
        switch opcode {
        case 0x80: _ = try byte()  // PROTO
        case 0x95: _ = try bytes(8)  // FRAME
        case 0x7D:  // EMPTY_DICT
            dicts.append(Dict())
            stack.append(.dict(dicts[dicts.count - 1]))
        case 0x5D:  // EMPTY_LIST
            lists.append(List())
            stack.append(.list(lists[lists.count - 1]))
        case 0x29: stack.append(.tuple([], depth: 1))  // EMPTY_TUPLE
        case 0x28: marks.append(stack.count)  // MARK
        case 0x4E: stack.append(.none)
        case 0x88, 0x89: stack.append(.bool(opcode == 0x88))
        case 0x4B: stack.append(.int(Int(try byte())))  // BININT1
        case 0x4D: stack.append(.int(try unsigned(2)))  // BININT2
        case 0x4A: stack.append(.int(Int(Int32(truncatingIfNeeded: try unsigned(4)))))  // BININT
        case 0x8A:  // LONG1; wider than 64 bits (the legacy format's magic number) as its bytes
            let count = Int(try byte())
            stack.append(count <= 8 ? .int(try long(count)) : .bytes(try bytes(count)))
        case 0x47:  // BINFLOAT, big-endian
            stack.append(.float(Double(bitPattern: try bytes(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) })))
        case 0x58, 0x8C, 0x8D:  // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
            let length = try unsigned(opcode == 0x8C ? 1 : opcode == 0x58 ? 4 : 8)
            stack.append(.string(String(decoding: try bytes(length), as: UTF8.self)))
        case 0x55, 0x54, 0x43, 0x42:  // SHORT_BINSTRING, BINSTRING, SHORT_BINBYTES, BINBYTES
            let length = try unsigned(opcode == 0x55 || opcode == 0x43 ? 1 : 4)
            let raw = try bytes(length)
            stack.append(opcode == 0x55 || opcode == 0x54 ? .string(String(decoding: raw, as: UTF8.self)) : .bytes(raw))
        default: try structure(opcode)
        }
    }

    /// A little-endian two's-complement integer of `count` bytes (LONG1), at most 8.
    private mutating func long(_ count: Int) throws -> Int {
        guard count <= 8 else { throw PyTorchError.malformed("an integer of \(count) bytes") }
        guard count > 0 else { return 0 }
        let raw = try bytes(count)
        var value = raw.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        if count < 8 && raw.last! & 0x80 != 0 { value |= ~UInt64(0) << (8 * count) }
        return Int(Int64(bitPattern: value))
    }

    private mutating func structure(_ opcode: UInt8) throws {
        switch opcode {
        case 0x71, 0x72, 0x94:  // BINPUT, LONG_BINPUT, MEMOIZE
            let key = opcode == 0x94 ? memo.count : try unsigned(opcode == 0x71 ? 1 : 4)
            guard let top = stack.last else { throw PyTorchError.malformed("the pickle's stack is empty") }
            memo[key] = top
        case 0x68, 0x6A:  // BINGET, LONG_BINGET
            let key = try unsigned(opcode == 0x68 ? 1 : 4)
            guard let value = memo[key] else { throw PyTorchError.malformed("the pickle reads an unset memo \(key)") }
            stack.append(value)
        case 0x74: stack.append(try tuple(try popToMark()))  // TUPLE
        case 0x85, 0x86, 0x87:  // TUPLE1, TUPLE2, TUPLE3
            let count = Int(opcode - 0x84)
            guard stack.count >= count else { throw PyTorchError.malformed("the pickle's stack is empty") }
            stack.append(try tuple(Array(stack.suffix(count))))
            stack.removeSubrange((stack.count - 1 - count)..<(stack.count - 1))
        case 0x63:  // GLOBAL
            stack.append(.global(try line() + "." + line()))
        case 0x93:  // STACK_GLOBAL
            guard case let .string(name) = try pop(), case let .string(module) = try pop() else {
                throw PyTorchError.malformed("STACK_GLOBAL without two names")
            }
            stack.append(.global(module + "." + name))
        case 0x51: stack.append(try TorchPickle.persistent(try pop()))  // BINPERSID
        case 0x52:  // REDUCE
            let arguments = try pop()
            let result = try TorchPickle.call(try pop(), arguments)
            if case let .dict(dict) = result { dicts.append(dict) }  // an OrderedDict, filled by SETITEMS next
            stack.append(result)
        case 0x62: _ = try pop()  // BUILD: the state of an OrderedDict (its _metadata) is not needed
        default: try collection(opcode)
        }
    }

    /// Tuples nested deeper than this are refused: releasing a value nested a hundred thousand deep would overflow
    /// the stack. (Lists and dicts are objects emptied one by one at the end, so their nesting costs nothing.)
    static let maximumDepth = 1_000

    private func tuple(_ items: [Value]) throws -> Value {
        let depth = 1 + items.reduce(0) { deepest, item in
            if case let .tuple(_, depth) = item { return max(deepest, depth) }
            return deepest
        }
        guard depth <= Self.maximumDepth else {
            throw PyTorchError.malformed("tuples nested over \(Self.maximumDepth) deep")
        }
        return .tuple(items, depth: depth)
    }

    private mutating func collection(_ opcode: UInt8) throws {
        switch opcode {
        case 0x61, 0x65:  // APPEND, APPENDS
            let items = opcode == 0x61 ? [try pop()] : try popToMark()
            guard case let .list(list) = stack.last else { throw PyTorchError.malformed("APPEND to a non-list") }
            list.items += items
        case 0x73, 0x75:  // SETITEM, SETITEMS
            let items = opcode == 0x73 ? [try pop(), try pop()].reversed() : try popToMark()
            guard items.count % 2 == 0, case let .dict(dict) = stack.last else {
                throw PyTorchError.malformed("SETITEMS on a non-dict")
            }
            dict.pairs += stride(from: 0, to: items.count, by: 2).map { (items[$0], items[$0 + 1]) }
        default:
            throw PyTorchError.malformed(String(format: "pickle opcode 0x%02x is not one torch.save writes", opcode))
        }
    }
}
