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
Standard library only, but for `--protocols v2-grpc` (ModelInfer through tritonclient's generated stub, the image as
a BYTES input in raw_input_contents, one channel per client): run that with the reference venv's python. Run from
the repository root after `swift build -c release`.

Usage: scripts/load_test.py [--model inception_v4] [--image PATH] [--concurrency 1 8] [--requests 100 400]
                            [--protocols v1 v2-binary v2-json v2-grpc]
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
EXE = os.environ.get("INCEPTION_EXE", os.path.join(ROOT, ".build", "release", "inception"))


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
        self.process = subprocess.Popen([EXE, "serve", "--model", model, "--random-weights", "0", "--port", "0",
                                         "--grpc-port", "0"] + extra, stdout=subprocess.PIPE, text=True)
        # "inception serve: listening on http://127.0.0.1:PORT (…)" and "inception serve: gRPC on 127.0.0.1:PORT (…)"
        ports = {}
        while len(ports) < 2:
            line = self.process.stdout.readline()
            if "listening on" not in line and "gRPC on" not in line:
                raise SystemExit(f"server did not start: {line!r}")
            ports["grpc" if "gRPC on" in line else "http"] = int(line.split("127.0.0.1:")[1].split()[0])
        self.port, self.grpc_port = ports["http"], ports["grpc"]
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


def take(lock, remaining):
    """Takes one of the requests left to send; False when none is left."""
    with lock:
        if remaining[0] == 0:
            return False
        remaining[0] -= 1
        return True


def load(port, path, body, clients, requests, headers=None):
    """`requests` POSTs shared by `clients` threads, each on its own keep-alive connection."""
    headers = headers or {"Content-Type": "image/jpeg"}
    lock = threading.Lock()
    remaining = [requests]
    latencies, statuses, retry_after_missing = [], {}, [0]

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while take(lock, remaining):
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

    return timed(client, clients, requests, latencies, statuses, retry_after_missing)


def timed(client, clients, requests, latencies, statuses, retry_after_missing):
    """Runs `client` on `clients` threads; the figures of what they recorded."""
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


def load_grpc(port, request, clients, requests):
    """`requests` ModelInfer calls shared by `clients` threads, each on its own channel (HTTP/2 connection)."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc
    lock = threading.Lock()
    remaining = [requests]
    latencies, statuses = [], {}

    def client():
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            while take(lock, remaining):
                t0 = time.perf_counter()
                try:
                    stub.ModelInfer(request, timeout=300)
                    code = 200  # counted with HTTP's statuses: 200 is gRPC's OK
                except grpc.RpcError as error:
                    code = error.code().name
                dt = time.perf_counter() - t0
                with lock:
                    statuses[code] = statuses.get(code, 0) + 1
                    if code == 200:
                        latencies.append(dt)

    return timed(client, clients, requests, latencies, statuses, [0])


def grpc_request(model, image, output):
    """ModelInfer for one image: a BYTES input in raw_input_contents (4-byte length, then the image), as
    tritonclient.grpc sends it."""
    from tritonclient.grpc import service_pb2
    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name="image", datatype="BYTES", shape=[1])
    request.outputs.add(name=output)
    request.raw_input_contents.append(len(image).to_bytes(4, "little") + image)
    return request


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
    ap.add_argument("--protocols", nargs="+", default=["v1"], choices=["v1", "v2-binary", "v2-json", "v2-grpc"],
                    help="each load level is run once per protocol, alternating: /v1 with the image, the Open "
                         "Inference Protocol with the image as binary BYTES, or with the preprocessed tensor as "
                         "JSON, or over gRPC with the image as BYTES")
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
    def run(protocol, clients, n):
        if protocol == "v2-grpc":
            return load_grpc(server.grpc_port, grpc_request(args.model, body, output), clients, n)
        return load(server.port, kinds[protocol][0], kinds[protocol][1], clients, n, kinds[protocol][2])

    for protocol in args.protocols:
        run(protocol, 2, 8)  # warm-up
    results = []
    for clients, n in zip(args.concurrency, args.requests):
        for protocol in args.protocols:
            before = batch_sizes(server.metrics(), args.model)
            r = run(protocol, clients, n)
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
