#!/usr/bin/env python3
"""The learning demonstration of docs/training.md: reduced-depth Inception-v4 and Inception-ResNet-v2 trained from
scratch with `inception train` on scikit-learn's bundled handwritten digits, with the same budget, and both runs'
curves drawn in one picture by `inception curves`.

Why these digits: they install offline with scikit-learn (no download), they are real scans (1,797 of them, 10
classes), and they are small enough that both networks train for several epochs on two CPU cores. The 8×8 images
are upscaled to the networks' smallest input (75×75).

Usage: scripts/digits_demo.py [--epochs 8] [--repeats 1,2,1] [--out runs/digits] [--svg docs/training-digits.svg]
Run from the repository root after `swift build -c release`, with a python that has scikit-learn and Pillow
(`.venv-ref/bin/python -m pip install scikit-learn`).
"""
import argparse
import json
import os
import subprocess
import time

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def write_images(out, size, seed):
    """A stratified 80/20 split of the digits as grey PNGs, one folder per class."""
    digits = load_digits()
    rng = np.random.default_rng(seed)
    for label in range(10):
        indices = np.flatnonzero(digits.target == label)
        rng.shuffle(indices)
        cut = int(round(len(indices) * 0.8))
        for part, chosen in (("train", indices[:cut]), ("val", indices[cut:])):
            folder = os.path.join(out, part, str(label))
            os.makedirs(folder, exist_ok=True)
            for i in chosen:
                pixels = (digits.images[i] * (255 / 16)).astype(np.uint8)
                Image.fromarray(pixels, "L").resize((size, size), Image.BICUBIC).save(os.path.join(folder, f"{i}.png"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", default="1,2,1", help="blocks in the A, B and C stages of both networks")
    parser.add_argument("--size", type=int, default=75)
    parser.add_argument("--out", default="runs/digits")
    parser.add_argument("--svg", default="docs/training-digits.svg")
    parser.add_argument("--binary", default=".build/release/inception")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = os.path.join(args.out, "data")
    if not os.path.isdir(data):
        write_images(data, args.size, args.seed)
    runs = []
    for model in ["inception_v4", "inception_resnet_v2"]:
        run = os.path.join(args.out, model)
        command = [args.binary, "train", "--model", model, "--repeats", args.repeats,
                   "--data", os.path.join(data, "train"), "--val", os.path.join(data, "val"), "--output", run,
                   "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--input-size", str(args.size),
                   "--crop-area", "0.5", "--no-flip", "--seed", str(args.seed)]
        resume = os.path.exists(os.path.join(run, "state.json"))
        print(" ".join(command + (["--resume"] if resume else [])), flush=True)
        start = time.perf_counter()
        subprocess.run(command + (["--resume"] if resume else []), check=True)
        runs.append((model, run, time.perf_counter() - start))
    subprocess.run([args.binary, "curves", *[r for _, r, _ in runs], "--output", args.svg], check=True)
    print(f"\n| network (blocks {args.repeats}) | epochs | final train loss | best validation accuracy (epoch) | final validation accuracy |")
    print("|---|---|---|---|---|")
    for model, run, seconds in runs:
        metrics = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
        best = max(metrics, key=lambda m: m["validationAccuracy"])
        print(f"| {model} | {len(metrics)} | {metrics[-1]['trainLoss']:.3f} | {best['validationAccuracy']:.3f} "
              f"({best['epoch']}) | {metrics[-1]['validationAccuracy']:.3f} |")
    print(f"\ncurves: {args.svg}")


if __name__ == "__main__":
    main()
