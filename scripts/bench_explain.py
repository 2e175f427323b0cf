#!/usr/bin/env python3
"""Times explanations in one run, alternating, and prints medians and their ratios: `inception bench --explain
gradcam` (a forward pass, the backward pass to the last block, the map) against `inception bench` (the forward pass
`classify` runs) on the same machine, and against pytorch-grad-cam's GradCAM on timm's network (random weights:
speed does not depend on them) with PyTorch's CPU threads set to the same count, at the same layer.

Each round runs each of the three: `inception bench` in its own process (`--runs` timed after warm-up), GradCAM in
this one (`--runs` calls after one untimed). The table gives the median of all timed runs. GradCAM is timed twice:
as its users run it (every parameter requires a gradient, so PyTorch's backward pass goes on to the first layer), and
at its best ("grad-cam frozen": every parameter frozen but the explained layer's own, which its hooks need to see a
gradient — the backward pass then stops at that layer, as ours does).

Usage: scripts/bench_explain.py [--models inception_v4 inception_resnet_v2] [--batch 1] [--rounds 3] [--runs 10]
                                [--threads N]
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

import timm
import torch
from pytorch_grad_cam import GradCAM

# The last block before pooling, by timm's module name (what `inception explain` explains by default).
LAYERS = {"inception_v4": lambda m: m.features[-1], "inception_resnet_v2": lambda m: m.conv2d_7b}


def ours(binary, model, batch, runs, threads, explain):
    words = [binary, "bench", "--model", model, "--batch", str(batch), "--runs", str(runs), "--warmup", "2",
             "--threads", str(threads), "--json", "--all-times"] + (["--explain", "gradcam"] if explain else [])
    report = json.loads(subprocess.run(words, capture_output=True, text=True, check=True).stdout)
    return report["times_ms"]


def grad_cam(cam, x, runs):
    cam(input_tensor=x, targets=None)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        cam(input_tensor=x, targets=None)
        times.append(1000 * (time.perf_counter() - started))
    return times


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(LAYERS))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--binary", default=".build/release/inception")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_name()}; {args.threads} threads; torch {torch.__version__}, timm {timm.__version__}")
    print(f"{'model':22}{'classify ms':>12}{'explain ms':>12}{'grad-cam ms':>13}{'frozen ms':>11}"
          f"{'explain/classify':>18}{'explain/grad-cam':>18}{'…/frozen':>14}")
    for name in args.models:
        model = timm.create_model(name, pretrained=False).eval()
        x = torch.randn(args.batch, 3, 299, 299)
        frozen = timm.create_model(name, pretrained=False).eval()
        for p in frozen.parameters():
            p.requires_grad_(False)
        for p in LAYERS[name](frozen).parameters():
            p.requires_grad_(True)
        cams = {"grad-cam": GradCAM(model=model, target_layers=[LAYERS[name](model)]),
                "frozen": GradCAM(model=frozen, target_layers=[LAYERS[name](frozen)])}
        times = {"classify": [], "explain": [], "grad-cam": [], "frozen": []}
        for _ in range(args.rounds):
            times["classify"] += ours(args.binary, name, args.batch, args.runs, args.threads, explain=False)
            times["explain"] += ours(args.binary, name, args.batch, args.runs, args.threads, explain=True)
            for peer, cam in cams.items():
                times[peer] += grad_cam(cam, x, args.runs)
        m = {k: statistics.median(v) for k, v in times.items()}
        print(f"{name:22}{m['classify']:12.1f}{m['explain']:12.1f}{m['grad-cam']:13.1f}{m['frozen']:11.1f}"
              f"{m['explain'] / m['classify']:17.2f}×{m['explain'] / m['grad-cam']:17.2f}×"
              f"{m['explain'] / m['frozen']:13.2f}×", flush=True)


if __name__ == "__main__":
    sys.exit(main())
