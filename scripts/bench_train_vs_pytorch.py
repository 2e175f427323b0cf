#!/usr/bin/env python3
"""Times a training step of `inception bench train` and of PyTorch (timm) on the same model and batch in one
run, alternating, and prints medians and their ratio.

A step is the same work on both sides: forward in train mode, label-smoothed (0.1) cross-entropy, backward, and
the paper's RMSProp update (timm's RMSpropTF: decay 0.9, momentum 0.9, eps 1.0, weight decay 4e-5), from random
weights. PyTorch runs in this process with its default threads; `inception bench train` in its own process
each round. Each round times `--runs` steps of each after one warm-up step; the table gives the median of all
timed steps.

Usage: scripts/bench_train_vs_pytorch.py [--models inception_v4 inception_resnet_v2] [--batch 8] [--size 299]
                                         [--rounds 3] [--runs 3]
Run from the repository root after `swift build -c release`, with the reference venv's python.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import time

import torch
import timm
from timm.optim import RMSpropTF


def pytorch_steps(name, batch, size, runs):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).train()
    optimizer = RMSpropTF(model.parameters(), lr=0.045, alpha=0.9, eps=1.0, momentum=0.9, weight_decay=4e-5)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.rand(batch, 3, size, size) * 2 - 1
    y = torch.randint(0, 1000, (batch,))
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        if i > 0:
            times.append((time.perf_counter() - start) * 1000)
    return times


def ours_steps(binary, name, batch, size, runs):
    out = subprocess.run([binary, "bench", "train", "--model", name, "--batch", str(batch), "--input-size", str(size),
                          "--runs", str(runs), "--warmup", "1", "--json", "--all-times"],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["times_ms"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["inception_v4", "inception_resnet_v2"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=299)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--binary", default=".build/release/inception")
    args = parser.parse_args()
    if not os.path.exists(args.binary):
        raise SystemExit(f"{args.binary} not found: run `swift build -c release` first")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), timm {timm.__version__}")
    print(f"| model | batch | size | PyTorch ms/step | ours ms/step | ours / PyTorch |")
    print(f"|---|---|---|---|---|---|")
    for name in args.models:
        ours, theirs = [], []
        for _ in range(args.rounds):
            theirs += pytorch_steps(name, args.batch, args.size, args.runs)
            ours += ours_steps(args.binary, name, args.batch, args.size, args.runs)
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"| {name} | {args.batch} | {args.size} | {b:.0f} | {a:.0f} | {a / b:.2f} |", flush=True)


if __name__ == "__main__":
    main()
