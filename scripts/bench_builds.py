#!/usr/bin/env python3
"""Two builds of `inception` on the same machine, alternating: forward passes (and optionally the training step),
each build's median over rounds, and the ratio candidate / baseline. A change to the kernels is judged by this (same
run, alternating, so a change of clock or a noisy neighbour hits both builds alike).

  scripts/bench_builds.py --baseline /tmp/inception-old --candidate .build/release/inception \
      --models inception_v4 inception_resnet_v2 inception_resnet_v1_facenet --batches 1 8 --rounds 3 --train

Each build's tile measurements are made before the timed rounds (a first load of each model), so the timings are
of the tiles it keeps, not of the measuring.
"""
import argparse
import json
import statistics
import subprocess


def bench(binary, model, batch, runs, train):
    args = [binary, "bench", "--model", model, "--batch", str(batch), "--runs", str(runs), "--json"]
    if train:
        args.append("--train")  # `bench train` since #45; the flag is what older builds read, and newer ones alias it
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["median_ms"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--candidate", required=True)
    parser.add_argument("--models", nargs="+", default=["inception_v4", "inception_resnet_v2",
                                                        "inception_resnet_v1_facenet"])
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 8], help="forward batches (none: --train only)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--train", action="store_true", help="also the training step at batch 8 (3 runs)")
    a = parser.parse_args()
    cases = [(m, b, False) for m in a.models for b in a.batches]
    if a.train:
        cases += [(m, 8, True) for m in a.models]
    for binary in (a.baseline, a.candidate):
        for model in a.models:
            bench(binary, model, 1, 1, False)  # a first load: the build measures and keeps its tiles
    print(f"{'model':30} {'batch':>5} {'mode':>8} {'baseline ms':>12} {'candidate ms':>13} {'ratio':>7}")
    for model, batch, train in cases:
        times = {a.baseline: [], a.candidate: []}
        for _ in range(a.rounds):
            for binary in (a.baseline, a.candidate):
                times[binary].append(bench(binary, model, batch, 3 if train else a.runs, train))
        base, cand = statistics.median(times[a.baseline]), statistics.median(times[a.candidate])
        mode = "train" if train else "forward"
        print(f"{model:30} {batch:>5} {mode:>8} {base:>12.1f} {cand:>13.1f} {cand / base:>7.3f}", flush=True)


if __name__ == "__main__":
    main()
