#!/usr/bin/env python3
"""Times `inception bench` at fp32, bf16 and int8 in one run, alternating the precisions round by round, and
prints the median time per image of each with its ratio to fp32 — the precision table of docs/performance.md.

Usage: scripts/bench_precision.py [--model inception_v4] [--batches 1,8] [--rounds 3] [--runs 5] [--isa avx2]
Random weights (int8: quantised on random images; speed does not depend on the values). --isa forces a kernel
level (INCEPTION_ISA), e.g. avx2 to time int8's AVX2 route on an AVX-512 machine. A precision this CPU cannot run
is reported as such.
"""
import argparse
import json
import os
import statistics
import subprocess


def bench(binary, model, precision, batch, runs, isa):
    environment = dict(os.environ, **({"INCEPTION_ISA": isa} if isa else {}))
    result = subprocess.run([binary, "bench", "--model", model, "--precision", precision, "--batch", str(batch),
                             "--runs", str(runs), "--json"], capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        return None, result.stderr.strip()
    report = json.loads(result.stdout)
    return report["median_ms"] / batch, report["route"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="inception_v4")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--isa")
    parser.add_argument("--binary", default=".build/release/inception")
    args = parser.parse_args()
    precisions = ["fp32", "bf16", "int8"]
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown CPU")
    print(f"{args.model}, {cpu}, {os.cpu_count()} cores, level {args.isa or 'best'}; "
          f"{args.rounds} rounds alternating, {args.runs} runs each")
    for batch in map(int, args.batches.split(",")):
        times = {p: [] for p in precisions}
        notes = {}
        for _ in range(args.rounds):
            for precision in precisions:
                ms, note = bench(args.binary, args.model, precision, batch, args.runs, args.isa)
                if ms is None:
                    notes[precision] = note
                else:
                    times[precision].append(ms)
                    notes.setdefault(precision, note)
        fp32 = statistics.median(times["fp32"])
        for precision in precisions:
            if not times[precision]:
                print(f"batch {batch} {precision}: {notes[precision]}")
                continue
            median = statistics.median(times[precision])
            print(f"batch {batch} {precision} ({notes[precision]}): {median:.1f} ms per image (rounds: "
                  f"{', '.join(f'{t:.1f}' for t in times[precision])}), {median / fp32:.2f}× fp32's time")


if __name__ == "__main__":
    main()
