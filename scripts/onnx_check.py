"""Checks exported ONNX models with the ONNX project's own tools: onnx.checker (full check, with shape inference)
and ONNX Runtime's CPU provider. Reads a manifest (JSON list of {"model": path.onnx, "inputs": [x.npy, …],
"out": dir, "optimize": true}; with "optimize" false, ONNX Runtime runs the graph as written, without its graph
rewrites); for each model and input writes every output as <dir>/<input stem>_<output name>.npy and prints
one JSON line: the model, its opset, IR version and outputs. The comparison with our own outputs is the Swift
test's (ONNXExportTests), which reads these files."""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort


def check(case):
    model = onnx.load(case["model"])
    onnx.checker.check_model(model, full_check=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    if not case.get("optimize", True):
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(case["model"], options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    os.makedirs(case["out"], exist_ok=True)
    for path in case["inputs"]:
        x = np.load(path)
        stem = os.path.splitext(os.path.basename(path))[0]
        for name, y in zip(names, session.run(names, {session.get_inputs()[0].name: x})):
            np.save(os.path.join(case["out"], f"{stem}_{name}.npy"), y.astype(np.float32))
    return {"model": case["model"], "opset": model.opset_import[0].version, "ir_version": model.ir_version,
            "input": session.get_inputs()[0].name, "input_shape": session.get_inputs()[0].shape, "outputs": names,
            "metadata": {p.key: p.value for p in model.metadata_props}}


def main():
    with open(sys.argv[1]) as f:
        manifest = json.load(f)
    for case in manifest:
        print(json.dumps(check(case)), flush=True)


if __name__ == "__main__":
    main()
