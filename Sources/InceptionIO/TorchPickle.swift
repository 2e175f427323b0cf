import Foundation

public indirect enum PyTorchError: Error, Equatable, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case malformed(String)
    /// A global the checkpoint calls that is not a tensor, parameter or OrderedDict rebuild: refused, never run.
    case forbidden(String)
    case notAStateDict(String)
    case missingStorage(String)
    case notFloatingPoint(name: String, dtype: String)
    case missingTensor(String)
    /// A zip archive without `data.pkl`.
    case noStateDictPickle
    /// Any of the above in the file at `path`.
    case inFile(path: String, PyTorchError)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): return "cannot read PyTorch checkpoint \(path): \(reason)"
        case let .malformed(reason): return "PyTorch checkpoint is malformed: \(reason)"
        case let .forbidden(name):
            return "PyTorch checkpoint calls \(name), which is not a tensor rebuild; refused (nothing was run)"
        case let .notAStateDict(what): return "PyTorch checkpoint holds \(what), not a state dict of tensors"
        case let .missingStorage(key): return "PyTorch checkpoint lacks the data of storage \(key)"
        case let .notFloatingPoint(name, dtype): return "tensor '\(name)' is \(dtype), not floating point"
        case let .missingTensor(name): return "no tensor '\(name)' in the checkpoint"
        case .noStateDictPickle: return "PyTorch checkpoint has no data.pkl in its archive"
        case let .inFile(path, error): return "\(path): \(error)"
        }
    }
}

/// What a PyTorch pickle may call, evaluated by the unpickler itself (no Python, nothing run): the storages behind
/// persistent ids, and the tensor, parameter and OrderedDict rebuilds; any other global is refused by name.
enum TorchPickle {
    /// A tensor as the pickle describes it: a view of a storage.
    struct TensorRef: Sendable {
        let storageType: String, key: String, offset: Int, size: [Int], stride: [Int]
    }

    static let elementSizes = ["FloatStorage": 4, "DoubleStorage": 8, "HalfStorage": 2, "BFloat16Storage": 2,
                               "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1,
                               "ByteStorage": 1, "BoolStorage": 1]

    /// A persistent id: `('storage', <storage type>, key, location, size)`.
    static func persistent(_ id: Unpickler.Value) throws -> Unpickler.Value {
        guard case let .tuple(items, _) = id, items.count >= 3, case .string("storage") = items[0],
              case let .global(type) = items[1], case let .string(key) = items[2] else {
            throw PyTorchError.malformed("a persistent id that is not a storage")
        }
        guard elementSizes[String(type.split(separator: ".").last ?? "")] != nil, type.hasPrefix("torch.") else {
            throw PyTorchError.forbidden(type)
        }
        return .storage(type: type, key: key)
    }

    /// `REDUCE`: the allowed calls, evaluated here; any other global is refused by name.
    static func call(_ function: Unpickler.Value, _ arguments: Unpickler.Value) throws -> Unpickler.Value {
        guard case let .global(name) = function, case let .tuple(args, _) = arguments else {
            throw PyTorchError.malformed("REDUCE without a global and its arguments")
        }
        switch name {
        case "collections.OrderedDict": return .dict(Unpickler.Dict())
        case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
            guard args.count >= 4, case let .storage(type, key) = args[0], case let .int(offset) = args[1],
                  case let .tuple(size, _) = args[2], case let .tuple(stride, _) = args[3] else {
                throw PyTorchError.malformed("a tensor rebuild with unexpected arguments")
            }
            let dims = size.compactMap { if case let .int(d) = $0 { d } else { nil } }
            let steps = stride.compactMap { if case let .int(d) = $0 { d } else { nil } }
            let count = dims.reduce(1 as Int?) { product, d in
                product.flatMap { p in
                    let (next, overflow) = p.multipliedReportingOverflow(by: d)
                    return overflow || next > Int(Int32.max) ? nil : next
                }
            }
            guard dims.count == size.count, steps.count == stride.count, dims.count == steps.count, offset >= 0,
                  dims.allSatisfy({ $0 >= 0 }), steps.allSatisfy({ $0 >= 0 }), count != nil else {
                throw PyTorchError.malformed("a tensor of shape \(dims) and strides \(steps)")
            }
            return .tensor(TensorRef(storageType: type, key: key, offset: offset, size: dims, stride: steps))
        case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
            guard let tensor = args.first, case .tensor = tensor else {
                throw PyTorchError.malformed("a parameter rebuild without a tensor")
            }
            return tensor
        default:
            throw PyTorchError.forbidden(name)
        }
    }

    /// How many `state_dict` / `model` wrappers are unwrapped before the file is refused as malformed.
    static let maximumWrapperDepth = 1_000

    /// The name → tensor map at the top of the pickle, or under `state_dict` / `model` wrappers — unwrapped in a
    /// loop, at most `maximumWrapperDepth` deep, refusing a dict that wraps itself.
    static func stateDict(_ root: Unpickler.Value) throws -> [String: TensorRef] {
        guard case var .dict(dict) = root else { throw PyTorchError.notAStateDict("no dict") }
        var seen: Set<ObjectIdentifier> = [ObjectIdentifier(dict)]
        while let inner = wrapped(in: dict) {
            guard seen.insert(ObjectIdentifier(inner)).inserted else {
                throw PyTorchError.malformed("a state_dict or model entry that contains itself")
            }
            guard seen.count <= maximumWrapperDepth else {
                throw PyTorchError.malformed("state_dict or model wrappers nested over \(maximumWrapperDepth) deep")
            }
            dict = inner
        }
        var tensors: [String: TensorRef] = [:]
        for (key, value) in dict.pairs {
            guard case var .string(name) = key else { throw PyTorchError.notAStateDict("a key that is not a name") }
            guard case let .tensor(tensor) = value else { continue }  // other entries (an epoch count) are not weights
            if name.hasPrefix("module.") { name.removeFirst("module.".count) }
            tensors[name] = tensor
        }
        guard !tensors.isEmpty else { throw PyTorchError.notAStateDict("no tensors") }
        return tensors
    }

    /// The dict under a `state_dict` key, else under `model`; nil when neither holds one.
    private static func wrapped(in dict: Unpickler.Dict) -> Unpickler.Dict? {
        for wrapper in ["state_dict", "model"] {
            for (key, value) in dict.pairs {
                if case .string(wrapper) = key, case let .dict(inner) = value { return inner }
            }
        }
        return nil
    }
}
