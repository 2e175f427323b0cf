#!/usr/bin/env python3
"""A batch job on one machine: `mpirun -np 2 inception embed --threads 1` against `inception embed --threads 2` on the
same images (the same cores, split between processes or between threads), alternating, the median of each; prints
the images per second of both and their ratio, and checks the two outputs are the same bytes.

    python scripts/bench_batch_mpi.py [--runs 5] [--images 64] [--model inception_v4] [--batch 8]

Needs a release build, Open MPI (scripts/install_dependencies.sh --tests) and the reference photos (.reference).
"""
import argparse
import os
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--model", default="inception_v4")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    inception = os.path.join(ROOT, ".build/release/inception")
    folder = os.path.join(os.environ.get("INCEPTION_REFERENCE_DIR", os.path.join(ROOT, ".reference")), "images")
    photos = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith((".jpg", ".png")))
    photos = (photos * (args.images // len(photos) + 1))[:args.images]
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    with tempfile.TemporaryDirectory() as scratch:
        weights = os.path.join(scratch, "weights.safetensors")
        subprocess.run([inception, "init", "--model", args.model, "--output", weights], check=True,
                       capture_output=True)
        common = ["embed", "--model", args.model, "--weights", weights, "--batch", str(args.batch), "--no-detect"]
        ways = {
            "1 process, 2 threads": [inception, *common, "--threads", "2"],
            "2 ranks, 1 thread each": ["mpirun", *root, "--oversubscribe", "-np", "2", inception, *common,
                                       "--threads", "1"],
        }
        seconds = {name: [] for name in ways}
        outputs = {}
        env = dict(os.environ, INCEPTION_TUNE="0")
        for _ in range(args.runs):
            for name, command in ways.items():
                output = os.path.join(scratch, f"{len(outputs)}.npy")
                started = time.monotonic()
                subprocess.run([*command, "--output", output, *photos], check=True, capture_output=True, env=env)
                seconds[name].append(time.monotonic() - started)
                outputs[name] = open(output, "rb").read()
        same = len(set(outputs.values())) == 1
        rates = {name: args.images / statistics.median(s) for name, s in seconds.items()}
        for name, rate in rates.items():
            print(f"{name}: {rate:.2f} images/s (median of {args.runs}, whole command: load and write included)")
        first, second = rates.values()
        print(f"ratio (2 ranks / 1 process): {second / first:.2f}; outputs {'identical' if same else 'DIFFER'}")


if __name__ == "__main__":
    main()
