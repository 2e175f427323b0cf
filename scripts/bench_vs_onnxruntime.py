#!/usr/bin/env python3
"""Times `inception bench` and ONNX Runtime (or OpenVINO) on the same model and batch in one run, alternating, and
prints medians and their ratio.

ONNX Runtime runs timm's ONNX export of the model (random weights: speed does not depend on them), CPU
provider, default threads. `inception bench` runs in its own process each round. Each round times `--runs`
forward passes of each after warm-up; the table gives the median of all timed passes.

Usage: scripts/bench_vs_onnxruntime.py [--models inception_v4 inception_resnet_v2 inception_resnet_v1_facenet]
                                      [--batches 1 8] [--rounds 3] [--runs 10]
                                      [--peer openvino] [--precision bf16]
Run from the repository root after `swift build -c release`, with the reference venv's python. `--peer openvino`
(`pip install openvino`) compiles an ONNX file with OpenVINO's CPU plugin at its default settings — bf16 on
CPUs with AVX512-BF16 or AMX, which is what a user deploying there gets — and names the precision it chose; by
default it runs this project's own `inception export` of the network (`--onnx ours`: the faster file for it),
ONNX Runtime timm's (`--onnx timm`). `--precision` is passed to `inception bench`.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import torch
import timm

INPUT_SIZE = {"inception_v4": 299, "inception_resnet_v2": 299, "inception_resnet_v1_facenet": 160}


def create(name):
    if name == "inception_resnet_v1_facenet":
        from facenet_pytorch import InceptionResnetV1
        return InceptionResnetV1(classify=False).eval()  # facenet-pytorch's ONNX export: the 512-d embedding
    return timm.create_model(name, pretrained=False).eval()


def export(name, batch, folder):
    path = os.path.join(folder, f"{name}_b{batch}.onnx")
    if not os.path.exists(path):
        model = create(name)
        size = INPUT_SIZE[name]
        torch.onnx.export(model, torch.randn(batch, 3, size, size), path, opset_version=17, dynamo=False,
                          input_names=["x"], output_names=["y"])
    return path


def our_export(name, batch, folder, binary):
    """`inception export` of the same random weights (`inception init --seed 1`, what `inception bench` runs): the
    file a user of this project deploys, which OpenVINO runs ~2.4 × faster than timm's export of the network."""
    path = os.path.join(folder, f"{name}_b{batch}_inception.onnx")
    weights = os.path.join(folder, f"{name}_init.safetensors")
    if not os.path.exists(weights):
        subprocess.run([binary, "init", "--model", name, "--seed", "1", "--output", weights], check=True)
    if not os.path.exists(path):
        subprocess.run([binary, "export", "--model", name, "--weights", weights, "--batch", str(batch),
                        "--output", path], check=True)
    return path


def checkpoint(name, folder):
    """The same random weights as a safetensors checkpoint, for `inception predict`."""
    path = os.path.join(folder, f"{name}.safetensors")
    if not os.path.exists(path):
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in create(name).state_dict().items()}, path)
    return path


def measured(command):
    """Wall time from launch to exit (ms) and peak resident memory (MB) of a process, measured from outside."""
    start = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "%M"] + command, check=True, capture_output=True, text=True)
    return (time.perf_counter() - start) * 1000, int(out.stderr.strip().splitlines()[-1]) / 1024


def cold(name, binary, folder, rounds):
    """Process start to the first result for one image: ours (`inception predict`) vs a Python process running
    ONNX Runtime on the exported model, alternating; medians."""
    size = INPUT_SIZE[name]
    x = os.path.join(folder, f"x_{size}.npy")
    np.save(x, np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32))
    onnx = export(name, 1, folder)
    weights = checkpoint(name, folder)
    ours, theirs = [], []
    ort_once = ("import numpy as np, onnxruntime as ort, sys; "
                "s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider']); "
                "s.run(None, {'x': np.load(sys.argv[2])})")
    for _ in range(rounds):
        theirs.append(measured([sys.executable, "-c", ort_once, onnx, x]))
        ours.append(measured([binary, "predict", "--model", name, "--weights", weights, "--input", x,
                              "--output", os.path.join(folder, "y.npy")]))
    med = lambda xs, i: statistics.median(v[i] for v in xs)
    return med(ours, 0), med(theirs, 0), med(ours, 1), med(theirs, 1), os.path.getsize(weights) / 1e6


def ort_times(path, batch, size, runs, warmup):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal((batch, 3, size, size),
                                                                              dtype=np.float32)}
    for _ in range(warmup):
        session.run(None, x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, x)
        times.append((time.perf_counter() - start) * 1000)
    return times


def openvino_times(path, batch, size, runs, warmup):
    import openvino
    compiled = openvino.Core().compile_model(path, "CPU")
    request = compiled.create_infer_request()
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
    for _ in range(warmup):
        request.infer({0: x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        request.infer({0: x})
        times.append((time.perf_counter() - start) * 1000)
    return times


def openvino_precision():
    import openvino
    return f"openvino {openvino.__version__}, CPU plugin defaults (inference precision " \
           f"{openvino.Core().get_property('CPU', 'INFERENCE_PRECISION_HINT')})"


def swift_times(binary, name, batch, runs, warmup, threads, precision="fp32"):
    args = [binary, "bench", "--model", name, "--batch", str(batch), "--runs", str(runs), "--warmup", str(warmup),
            "--json", "--all-times", "--precision", precision]
    if threads:
        args += ["--threads", str(threads)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["times_ms"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["inception_v4"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="threads for inception (default: all cores)")
    parser.add_argument("--binary", default=".build/release/inception")
    parser.add_argument("--cache", default=".bench")
    parser.add_argument("--peer", choices=["onnxruntime", "openvino"], default="onnxruntime")
    parser.add_argument("--precision", default="fp32", help="inception's --precision")
    parser.add_argument("--onnx", choices=["timm", "ours"],
                        help="the peer's file: timm's (facenet-pytorch's) export, or `inception export` of the same "
                             "network (default: ours for OpenVINO, timm's for ONNX Runtime)")
    parser.add_argument("--cold", action="store_true",
                        help="also measure process start to first result, and peak resident memory, for one image")
    args = parser.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    for name in args.models:
        for batch in args.batches:
            use_ours = (args.onnx or ("ours" if args.peer == "openvino" else "timm")) == "ours"
            path = our_export(name, batch, args.cache, args.binary) if use_ours else export(name, batch, args.cache)
            size = INPUT_SIZE[name]
            ours, theirs = [], []
            peer = openvino_times if args.peer == "openvino" else ort_times
            for _ in range(args.rounds):  # alternate so that both see the same machine conditions
                theirs += peer(path, batch, size, args.runs, args.warmup)
                ours += swift_times(args.binary, name, batch, args.runs, args.warmup, args.threads, args.precision)
            o, t = statistics.median(ours), statistics.median(theirs)
            rows.append((name, batch, o, t))
    peer = (openvino_precision() if args.peer == "openvino"
            else f"onnxruntime {ort.__version__}, CPU provider, default threads")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {peer}; "
          f"timm {timm.__version__}; inception --precision {args.precision}")
    print(f"{args.rounds} rounds × {args.runs} timed runs each, alternating; medians in ms")
    label = "OpenVINO" if args.peer == "openvino" else "ONNX Runtime"
    print(f"| model | batch | inception (ms) | {label} (ms) | per image: inception / {label} (ms) | ratio |")
    print("|---|---|---|---|---|---|")
    for name, batch, o, t in rows:
        print(f"| {name} | {batch} | {o:.1f} | {t:.1f} | {o / batch:.1f} / {t / batch:.1f} | {o / t:.2f} |")
    if args.cold:
        print()
        print("process start to first result, one image (medians of", args.rounds, "launches each, alternating)")
        print("| model | inception predict (ms) | ONNX Runtime in Python (ms) | ratio | peak RSS inception / ORT (MB) | weights (MB) |")
        print("|---|---|---|---|---|---|")
        for name in args.models:
            o, t, orss, trss, w = cold(name, args.binary, args.cache, args.rounds)
            print(f"| {name} | {o:.0f} | {t:.0f} | {o / t:.2f} | {orss:.0f} / {trss:.0f} | {w:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
