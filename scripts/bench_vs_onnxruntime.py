#!/usr/bin/env python3
"""Times `inception bench` and ONNX Runtime on the same model and batch in one run, alternating, and prints
medians and their ratio.

ONNX Runtime runs timm's ONNX export of the model (random weights: speed does not depend on them), CPU
provider, default threads. `inception bench` runs in its own process each round. Each round times `--runs`
forward passes of each after warm-up; the table gives the median of all timed passes.

Usage: scripts/bench_vs_onnxruntime.py [--models inception_v4 inception_resnet_v2 inception_resnet_v1_facenet]
                                      [--batches 1 8] [--rounds 3] [--runs 10]
Run from the repository root after `swift build -c release`, with the reference venv's python.
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


def ort_times(path, batch, size, runs, warmup):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
    for _ in range(warmup):
        session.run(None, {"x": x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {"x": x})
        times.append((time.perf_counter() - start) * 1000)
    return times


def swift_times(binary, name, batch, runs, warmup, threads):
    args = [binary, "bench", "--model", name, "--batch", str(batch), "--runs", str(runs), "--warmup", str(warmup),
            "--json", "--all-times"]
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
    args = parser.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    for name in args.models:
        for batch in args.batches:
            path = export(name, batch, args.cache)
            size = INPUT_SIZE[name]
            ours, theirs = [], []
            for _ in range(args.rounds):  # alternate so that both see the same machine conditions
                theirs += ort_times(path, batch, size, args.runs, args.warmup)
                ours += swift_times(args.binary, name, batch, args.runs, args.warmup, args.threads)
            o, t = statistics.median(ours), statistics.median(theirs)
            rows.append((name, batch, o, t))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"onnxruntime {ort.__version__}, CPU provider, default threads; timm {timm.__version__}")
    print(f"{args.rounds} rounds × {args.runs} timed runs each, alternating; medians in ms")
    print("| model | batch | inception (ms) | ONNX Runtime (ms) | per image: inception / ORT (ms) | ratio |")
    print("|---|---|---|---|---|---|")
    for name, batch, o, t in rows:
        print(f"| {name} | {batch} | {o:.1f} | {t:.1f} | {o / batch:.1f} / {t / batch:.1f} | {o / t:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
