#!/usr/bin/env python3
"""Load test of `inception serve` against `inception bench`, in one run.

1. `inception bench` at batch 1, 2, 4 and 8 on the same model (random weights): the best images per second is
   what the server should approach.
2. `inception serve --random-weights 0` on 127.0.0.1, then a bounded number of POST /classify (/embed for the face
   model) requests (one real
   JPEG, decoded and preprocessed by the server each time) from N client threads with keep-alive connections,
   for each concurrency level: throughput, p50/p90/p99 latency, and the status of every response.
3. An overload phase: more clients than `--max-queue` allows; the only errors allowed are 503s with Retry-After.

Prints a table (Markdown) and a JSON summary; exits non-zero if any response was an unintended error.
Standard library only. Run from the repository root after `swift build -c release`.

Usage: scripts/load_test.py [--model inception_v4] [--image PATH] [--concurrency 1 8] [--requests 100 400]
                            [--protocols v1 v2-binary v2-json]
                            [--overload-clients 32 --overload-requests 256 --overload-queue 8]
"""
import argparse
import http.client
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXE = os.path.join(ROOT, ".build", "release", "inception")


def bench(model, batches, runs):
    best = None
    rows = []
    for b in batches:
        out = subprocess.run([EXE, "bench", "--model", model, "--batch", str(b), "--runs", str(runs), "--json"],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out)
        ips = 1000.0 * b / r["median_ms"]
        rows.append((b, r["median_ms"], ips))
        best = max(best or 0, ips)
    return rows, best


class Server:
    def __init__(self, model, extra):
        self.process = subprocess.Popen([EXE, "serve", "--model", model, "--random-weights", "0", "--port", "0"] + extra,
                                        stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()  # "inception serve: listening on http://127.0.0.1:PORT (…)"
        if "listening on" not in line:
            raise SystemExit(f"server did not start: {line!r}")
        self.port = int(line.split("127.0.0.1:")[1].split()[0])
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/ready")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)

    def metrics(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        c.request("GET", "/metrics")
        return c.getresponse().read().decode()

    def stop(self):
        self.process.terminate()  # SIGTERM: graceful
        return self.process.wait(timeout=60)


def load(port, path, body, clients, requests, headers=None):
    """`requests` POSTs shared by `clients` threads, each on its own keep-alive connection."""
    headers = headers or {"Content-Type": "image/jpeg"}
    lock = threading.Lock()
    remaining = [requests]
    latencies, statuses, retry_after_missing = [], {}, [0]

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while True:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
            t0 = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            dt = time.perf_counter() - t0
            with lock:
                statuses[response.status] = statuses.get(response.status, 0) + 1
                if response.status == 200:
                    latencies.append(dt)
                elif response.status == 503 and not response.getheader("Retry-After"):
                    retry_after_missing[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    latencies.sort()

    def pct(p):
        return 1000 * latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] if latencies else float("nan")

    return {"clients": clients, "requests": requests, "statuses": statuses, "seconds": wall,
            "ok_per_s": len(latencies) / wall, "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
            "retry_after_missing": retry_after_missing[0]}


def v2_requests(model, image, output):
    """The Open Inference Protocol's infer request for one image, two ways: binary tensor data (the encoded image as
    a BYTES input, the output binary) and plain JSON (the preprocessed FP32 tensor as numbers, as a client that
    cannot send binary data does)."""
    header = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": 4 + len(image)}}],
                         "outputs": [{"name": output, "parameters": {"binary_data": True}}]}).encode()
    binary = header + len(image).to_bytes(4, "little") + image
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "image.jpg"), os.path.join(scratch, "x.npy")
        open(path[0], "wb").write(image)
        subprocess.run([EXE, "preprocess", "--model", model, path[0], "--output", path[1]], check=True)
        x = read_npy(path[1])
    body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": x[0], "data": x[1]}],
                       "outputs": [{"name": output}]}).encode()
    return {"v2-binary": (binary, {"Inference-Header-Content-Length": str(len(header))}),
            "v2-json": (body, {"Content-Type": "application/json"})}


def read_npy(path):
    """(shape, values) of a little-endian float32 .npy, with the standard library."""
    data = open(path, "rb").read()
    length = int.from_bytes(data[8:10], "little")
    header = data[10:10 + length].decode()
    shape = [int(d) for d in header.split("'shape': (")[1].split(")")[0].split(",") if d.strip()]
    values = struct.unpack(f"<{len(data[10 + length:]) // 4}f", data[10 + length:])
    return shape, list(values)


def batch_sizes(metrics, model):
    prefix = f'inception_batch_size_'
    s = c = 0.0
    for line in metrics.splitlines():
        if line.startswith(prefix + f'sum{{model="{model}"}}'):
            s = float(line.split()[-1])
        if line.startswith(prefix + f'count{{model="{model}"}}'):
            c = float(line.split()[-1])
    return s, c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="inception_v4")
    ap.add_argument("--image", default=os.path.join(ROOT, ".reference", "images", "chelsea_baseline.jpg"))
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--requests", type=int, nargs="+", default=[100, 400])
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--max-delay-ms", type=int, default=5)
    ap.add_argument("--bench-runs", type=int, default=10)
    ap.add_argument("--overload-clients", type=int, default=32)
    ap.add_argument("--overload-requests", type=int, default=256)
    ap.add_argument("--overload-queue", type=int, default=8)
    ap.add_argument("--protocols", nargs="+", default=["v1"], choices=["v1", "v2-binary", "v2-json"],
                    help="each load level is run once per protocol, alternating: /v1 with the image, the Open "
                         "Inference Protocol with the image as binary BYTES, or with the preprocessed tensor as JSON")
    args = ap.parse_args()
    if len(args.requests) != len(args.concurrency):
        raise SystemExit("give one --requests per --concurrency")
    body = open(args.image, "rb").read()
    # The face model's random weights have no classifier: it is served for embeddings.
    endpoint = "embed" if args.model == "inception_resnet_v1_facenet" else "classify"
    path = f"/v1/models/{args.model}/{endpoint}"
    print(f"# {args.model}, image {os.path.basename(args.image)} ({len(body)} bytes), {platform.machine()}, {os.cpu_count()} cores",
          flush=True)

    rows, best = bench(args.model, [1, 2, 4, 8], args.bench_runs)
    print("\n| inception bench batch | median ms | images/s |\n|---|---|---|")
    for b, ms, ips in rows:
        print(f"| {b} | {ms:.1f} | {ips:.2f} |")

    server = Server(args.model, ["--max-batch", str(args.max_batch), "--max-delay-ms", str(args.max_delay_ms)])
    output = "embedding" if endpoint == "embed" else "logits"
    kinds = {"v1": (path, body, None)}
    if any(p.startswith("v2") for p in args.protocols):
        for name, (v2_body, headers) in v2_requests(args.model, body, output).items():
            kinds[name] = (f"/v2/models/{args.model}/infer", v2_body, headers)
    for protocol in args.protocols:
        load(server.port, *kinds[protocol][:2], 2, 8, kinds[protocol][2])  # warm-up
    results = []
    for clients, n in zip(args.concurrency, args.requests):
        for protocol in args.protocols:
            before = batch_sizes(server.metrics(), args.model)
            r = load(server.port, kinds[protocol][0], kinds[protocol][1], clients, n, kinds[protocol][2])
            after = batch_sizes(server.metrics(), args.model)
            r["protocol"] = protocol
            r["mean_batch"] = (after[0] - before[0]) / max(1.0, after[1] - before[1])
            r["vs_bench_best"] = r["ok_per_s"] / best
            results.append(r)
    server_status = server.stop()

    overload = Server(args.model, ["--max-batch", str(args.max_batch), "--max-delay-ms", str(args.max_delay_ms),
                                   "--max-queue", str(args.overload_queue)])
    o = load(overload.port, path, body, args.overload_clients, args.overload_requests)
    overload_status = overload.stop()

    print(f"\n| protocol | clients | requests | statuses | images/s | vs bench best ({best:.2f}/s) | mean batch | "
          "p50 ms | p90 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['protocol']} | {r['clients']} | {r['requests']} | {r['statuses']} | {r['ok_per_s']:.2f} | "
              f"{r['vs_bench_best']:.2f} | "
              f"{r['mean_batch']:.2f} | {r['p50_ms']:.0f} | {r['p90_ms']:.0f} | {r['p99_ms']:.0f} |")
    print(f"\noverload: {o['clients']} clients, {o['requests']} requests, --max-queue {args.overload_queue}: statuses {o['statuses']}, "
          f"{o['ok_per_s']:.2f} answered/s, p50 {o['p50_ms']:.0f} ms, p99 {o['p99_ms']:.0f} ms of the answered; "
          f"503 without Retry-After: {o['retry_after_missing']}")
    print(f"server exit status after SIGTERM: {server_status}, {overload_status}")
    print(json.dumps({"bench": rows, "load": results, "overload": o}))

    unintended = sum(n for r in results for s, n in r["statuses"].items() if s != 200)
    unintended += sum(n for s, n in o["statuses"].items() if s not in (200, 503)) + o["retry_after_missing"]
    if unintended or server_status or overload_status:
        raise SystemExit(f"{unintended} unintended error responses")


if __name__ == "__main__":
    main()
