import Inception

/// What the Open Inference Protocol says of the server and of a model: built here once, rendered by each half
/// (`/v2` as JSON, gRPC as its messages).
struct ServerMetadata {
    let name = "inception"
    let version = InceptionPackage.version
    let extensions = OpenInference.extensions

    var json: [String: Any] { ["name": name, "version": version, "extensions": extensions] }
}

/// A model's name, versions, inputs and outputs with their datatypes and shapes (-1: any batch size): `input` FP32
/// [-1, 3, S, S] and `image` BYTES [-1], and the model's outputs.
struct ModelMetadata {
    struct Tensor {
        let name: String, datatype: String, shape: [Int]

        var json: [String: Any] { ["name": name, "datatype": datatype, "shape": shape] }
    }

    let name: String
    let versions = ["1"]
    let platform = "inception"
    let inputs: [Tensor]
    let outputs: [Tensor]

    init(_ model: InceptionModel) {
        let size = model.inputSize
        name = model.name.rawValue
        inputs = [Tensor(name: "input", datatype: "FP32", shape: [-1, 3, size, size]),
                  Tensor(name: "image", datatype: "BYTES", shape: [-1])]
        outputs = model.outputNames.map {
            Tensor(name: $0.rawValue, datatype: "FP32", shape: [-1, model.width(of: $0) ?? 0])
        }
    }

    var json: [String: Any] {
        ["name": name, "versions": versions, "platform": platform, "inputs": inputs.map(\.json),
         "outputs": outputs.map(\.json)]
    }
}
