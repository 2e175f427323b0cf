#!/usr/bin/env python3
"""The accuracy table of docs/performance.md's precision section: reduced-depth networks trained from scratch on
scikit-learn's handwritten digits (real scans, installed offline with scikit-learn), quantised with
`inception quantize` calibrated on the training split, and classified on the held-out split in fp32, bf16 and int8.
Prints, per network and precision, the held-out top-1 accuracy and how many images keep fp32's class.

Usage: scripts/precision_accuracy.py [--models inception_resnet_v2,inception_v4] [--epochs 10] [--out runs/precision]
Run from the repository root after `swift build -c release`, with a python that has scikit-learn and Pillow
(`.venv-ref/bin/python -m pip install scikit-learn`). bf16 is reported as unavailable on a CPU without AVX512-BF16.
"""
import argparse
import glob
import json
import os
import subprocess

from digits_demo import write_images


def train(binary, model, data, run, epochs, seed):
    """The digits recipe of docs/training.md with a cosine schedule (it ends at its best rather than mid-swing)."""
    if os.path.exists(os.path.join(run, "model.safetensors")):
        return
    subprocess.run([binary, "train", "--model", model, "--repeats", "1,2,1", "--data", os.path.join(data, "train"),
                    "--val", os.path.join(data, "val"), "--output", run, "--epochs", str(epochs),
                    "--batch-size", "32", "--input-size", "75", "--crop-area", "0.5", "--no-flip",
                    "--schedule", "cosine", "--warmup-epochs", "1", "--seed", str(seed)], check=True)


def classes(binary, weights, precision, images):
    """Each image's top class, or None when this CPU cannot run the precision."""
    result = subprocess.run([binary, "classify", "--weights", weights, "--precision", precision, "--top", "1",
                             "--json", *images], capture_output=True, text=True)
    if result.returncode != 0:
        print(f"  {precision}: {result.stderr.strip()}")
        return None
    return {entry["image"]: entry["predictions"][0]["index"] for entry in json.loads(result.stdout)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="inception_resnet_v2,inception_v4")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default="runs/precision")
    parser.add_argument("--binary", default=".build/release/inception")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = os.path.join(args.out, "data")
    if not os.path.isdir(data):
        write_images(data, 75, args.seed)
    val = sorted(glob.glob(os.path.join(data, "val", "*", "*.png")))
    labels = {path: int(os.path.basename(os.path.dirname(path))) for path in val}
    rows = []
    for model in args.models.split(","):
        run = os.path.join(args.out, model)
        train(args.binary, model, data, run, args.epochs, args.seed)
        fp32, int8 = os.path.join(run, "model.safetensors"), os.path.join(run, "int8.safetensors")
        subprocess.run([args.binary, "quantize", "--weights", fp32, "--calibration", os.path.join(data, "train"),
                        "--output", int8], check=True)
        predicted = {p: classes(args.binary, w, p, val) for p, w in [("fp32", fp32), ("bf16", fp32), ("int8", int8)]}
        for precision, top in predicted.items():
            if top is None:
                rows.append((model, precision, None, None))
                continue
            correct = sum(top[path] == labels[path] for path in val)
            agree = sum(top[path] == predicted["fp32"][path] for path in val)
            rows.append((model, precision, correct, agree))
    print(f"\n| network (blocks 1,2,1), {len(val)} held-out digits | precision | top-1 | same class as fp32 |")
    print("|---|---|---|---|")
    for model, precision, correct, agree in rows:
        if correct is None:
            print(f"| {model} | {precision} | (not on this CPU) | |")
        else:
            print(f"| {model} | {precision} | {100 * correct / len(val):.2f} % ({correct}) | {agree} of {len(val)} |")


if __name__ == "__main__":
    main()
