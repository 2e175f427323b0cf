import ArgumentParser
import Foundation
import Inception
import InceptionIO
import InceptionONNX

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a network's inference graph as an ONNX model (standard operators, BatchNorm folded).",
        discussion: """
            The model takes `input`, float32 [batch, 3, S, S] in NCHW (S: the weights' input size, preprocessed \
            as `inception preprocess` does), and gives every output of the network by name: `logits`, \
            `features` and, for the face model, `embedding`. Its metadata names the network, the input size, \
            the preprocessing (mean, std, crop fraction, interpolation) and the class names when the checkpoint \
            has them. The file passes onnx.checker and runs in ONNX Runtime. A quantised checkpoint (`inception \
            quantize`) exports with QuantizeLinear/DequantizeLinear on its int8 layers' inputs.
            """)

    @OptionGroup var weights: WeightsOption

    @Option(help: "The ONNX file to write.")
    var output: String

    @Option(help: "The ONNX opset (13…22).")
    var opset: Int = 17

    @Option(help: "The batch dimension: 'dynamic' (named 'batch', any size) or a fixed count.")
    var batch: String = "dynamic"

    @Flag(help: "Print what was written as JSON.")
    var json = false

    func validate() throws {
        guard ONNXExport.opsets.contains(opset) else {
            let (low, high) = (ONNXExport.opsets.lowerBound, ONNXExport.opsets.upperBound)
            throw CLIError("--opset must be in \(low)…\(high)")
        }
        guard ONNXBatch(batch) != nil else {
            throw CLIError("--batch must be 'dynamic' or a count in 1…4096, not '\(batch.prefix(20))'")
        }
        try FlagRule.output(output, notAmong: [weights.weights].compactMap { $0 }, json: json)
    }

    func run() throws {
        try reportingErrors {
            let (name, source) = try weights.source()
            let loaded = try ModelWeights(name, from: source)
            let data = try ONNXExport.serialized(loaded, opset: opset, batch: ONNXBatch(batch)!)
            try FileOutput.write(data, to: output)
            let outputs = loaded.graph.outputs.keys.sorted().map(\.rawValue)
            if json {
                try printJSON(["model": name.rawValue, "output": output, "opset": opset, "batch": batch,
                               "input_size": loaded.inputSize, "outputs": outputs, "bytes": data.count])
            } else {
                print("\(output): \(name.rawValue), opset \(opset), input [\(batch), 3, \(loaded.inputSize), "
                      + "\(loaded.inputSize)], outputs \(outputs.joined(separator: ", "))")
            }
        }
    }
}
