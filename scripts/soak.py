#!/usr/bin/env python3
"""Soak test of `inception serve` under attack (issue #16), bounded in time, on loopback only.

Starts the server (random weights), measures a valid request unloaded, warms it up with concurrent valid traffic
(the engine keeps an activation arena per batch size), takes its resident memory as idle, then for --seconds runs
at once:
  - a valid client (one request at a time) and a /health poller (every 50 ms),
  - attackers cycling through the hostile inputs of docs/reliability.md: thin PNGs, a 13000² PNG, a progressive
    JPEG of 1000 scans, a 16 MB multipart body of empty parts, 16 MB junk uploads, slowloris headers, a body that
    stalls, a client that disconnects before its answer, idle connections; and on the gRPC port (issue #41,
    scripts/grpc_attacks.py): a negative grpc-timeout, a message of 8,000,000 empty inputs, a 1 MB model name, a
    17th stream on a connection, a message that stalls.
Then checks: every attack got a clean answer (a status, or the connection closed by a deadline) within its bound;
/health's 99th percentile under 100 ms; the valid request's median under 2x its unloaded median; peak resident
memory under idle + 3 x --max-bytes-in-flight + decode threads x 6 bytes x --max-image-pixels + 64 MiB, and back
within 64 MiB of idle afterwards; SIGTERM ends the server within the drain timeout. Exits 1 on any violation.
Usage: scripts/soak.py [--seconds 20] [--references .reference]   (after `swift build -c release`)
"""
import argparse
import http.client
import os
import signal
import socket
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpc_attacks  # noqa: E402  (raw HTTP/2 frames through python-h2)
from load_test import Server  # noqa: E402  (starts `inception serve` on a free port and waits for /ready)

MODEL = "inception_resnet_v1_facenet"
PATH = f"/v1/models/{MODEL}/embed"
MIB = 1 << 20
MAX_BYTES_IN_FLIGHT, MAX_IMAGE_PIXELS, DECODE_THREADS = 128 * MIB, 25_000_000, 4


def memory(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def post(port, body, content_type=None, timeout=60):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": content_type} if content_type else {}
    start = time.monotonic()
    connection.request("POST", PATH, body=body, headers=headers)
    status = connection.getresponse().status
    connection.close()
    return status, time.monotonic() - start


def raw(port, data, stall=0.0, read=True, timeout=30):
    """Sends `data`, waits `stall` seconds, then reads until closed; the status, or 'closed' when none came."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    start = time.monotonic()
    try:
        s.sendall(data)
        time.sleep(stall)
        if not read:
            return "gone", time.monotonic() - start
        answer = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
        line = answer.split(b"\r\n", 1)[0].split()
        return (int(line[1]) if len(line) > 1 else "closed"), time.monotonic() - start
    except (ConnectionResetError, BrokenPipeError):
        return "closed", time.monotonic() - start
    finally:
        s.close()


def attacks(port, grpc_port, files):
    head = f"POST {PATH} HTTP/1.1\r\nHost: x\r\n".encode()
    junk = b"A" * (16 * MIB)
    bomb = b"--B\r\n\r\n\r\n" * (16_000_000 // 9)
    photo = files["photo"]
    return {
        # name: (action, the answers that are clean, seconds allowed)
        "thin 1x100000 png": (lambda: post(port, files["thin_1x100000.png"]), {200}, 5),
        "thin 100000x1 png": (lambda: post(port, files["thin_100000x1.png"]), {200}, 5),
        "13000x13000 png": (lambda: post(port, files["zeros_13000.png"]), {400}, 5),
        "jpeg of 1000 scans": (lambda: post(port, files["scans_1000.jpg"]), {200, 400}, 5),
        "16 MB multipart of empty parts": (lambda: post(port, bomb, "multipart/form-data; boundary=B"), {400, 503}, 10),
        "16 MB junk upload": (lambda: post(port, junk), {400, 503}, 10),
        "slowloris headers": (lambda: raw(port, head, stall=0), {"closed"}, 4),
        "stalled body": (lambda: raw(port, head + b"Content-Length: 100000\r\n\r\nabc"), {"closed", 503}, 8),
        "disconnect before the answer": (lambda: raw(port, head + f"Content-Length: {len(photo)}\r\n\r\n".encode()
                                                     + photo, read=False), {"gone"}, 5),
        "idle connection": (lambda: raw(port, b""), {"closed"}, 4),
        **grpc(grpc_port),
    }


EMPTY_INPUTS = b"\x0a\x1binception_resnet_v1_facenet" + b"\x2a\x00" * 8_000_000


def grpc(port):
    """The gRPC port's attacks: each answered with its status (or the stream refused) within its bound."""
    def call(method, message, extra=()):
        start = time.monotonic()
        status, text = grpc_attacks.unary(port, method, message, extra, timeout=30)
        return (status if len(text) < 1024 else "long message"), time.monotonic() - start

    def streams():
        start = time.monotonic()
        _, refused, answered, _ = grpc_attacks.past_the_limit(port)
        alone = refused == grpc_attacks.REFUSED_STREAM and set(answered) == {grpc_attacks.OK}
        return ("refused alone" if alone else "connection lost"), time.monotonic() - start

    def stall():
        start = time.monotonic()
        with grpc_attacks.Connection(port, timeout=30) as c:
            stream = c.open("ModelInfer")
            c.send(stream, grpc_attacks.framed(b"\x00" * MIB)[:MIB // 2])
            c.wait([stream], 30)
            return c.status(stream), time.monotonic() - start

    return {
        "grpc negative grpc-timeout": (lambda: call("ServerLive", b"", [("grpc-timeout", "-5S")]), {3}, 5),
        "grpc 8,000,000 empty inputs": (lambda: call("ModelInfer", EMPTY_INPUTS), {3, 8}, 10),
        "grpc 1 MB model name": (lambda: call("ModelMetadata", b"\x0a\x80\x80\x40" + b"m" * MIB), {5, 8}, 10),
        "grpc 17th stream": (streams, {"refused alone"}, 10),
        "grpc stalled message": (stall, {4, 8}, 8),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--references", default=os.environ.get("INCEPTION_REFERENCE_DIR", ".reference"))
    args = parser.parse_args()
    files = {name: open(os.path.join(args.references, "attacks", name), "rb").read()
             for name in ("thin_1x100000.png", "thin_100000x1.png", "zeros_13000.png", "scans_1000.jpg")}
    files["photo"] = open(os.path.join(args.references, "images", "rocket.jpg"), "rb").read()
    server = Server(MODEL, ["--decode-time-limit", "1", "--idle-timeout", "2", "--header-timeout", "2",
                            "--body-timeout", "5", "--drain-timeout", "3"])
    try:
        return soak(server.process, server.port, server.grpc_port, args, files)
    finally:
        if server.process.poll() is None:
            server.process.kill()


def soak(server, port, grpc_port, args, files):
    unloaded = statistics.median(post(port, files["photo"])[1] for _ in range(7))
    # Warm up with concurrent valid traffic first: the engine keeps one activation arena per batch size it has run
    # (1 to --max-batch), a cache that is part of the idle footprint, not of the attacks.
    for clients in (8, 5, 3, 7, 6, 2, 4):
        warm = [threading.Thread(target=lambda: [post(port, files["photo"]) for _ in range(3)]) for _ in range(clients)]
        for t in warm:
            t.start()
        for t in warm:
            t.join()
    idle, _ = memory(server.pid)
    results, health, valid, stop = {}, [], [], threading.Event()
    lock = threading.Lock()

    def attacker(offset):
        kinds = list(attacks(port, grpc_port, files).items())
        i = offset
        while not stop.is_set():
            name, (action, clean, bound) = kinds[i % len(kinds)]
            i += 1
            try:
                answer, took = action()
            except Exception as error:  # a client-side failure is a finding too
                answer, took = f"client error {type(error).__name__}", 0
            with lock:
                results.setdefault(name, []).append((answer, took, answer in clean and took <= bound))

    def poller():
        while not stop.is_set():
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            start = time.monotonic()
            connection.request("GET", "/health")
            connection.getresponse().read()
            health.append(time.monotonic() - start)
            connection.close()
            time.sleep(0.05)

    def client():
        while not stop.is_set():
            status, took = post(port, files["photo"])
            valid.append((status, took))

    threads = [threading.Thread(target=attacker, args=(k,)) for k in range(4)]
    threads += [threading.Thread(target=poller), threading.Thread(target=client)]
    for t in threads:
        t.start()
    peak = 0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        peak = max(peak, memory(server.pid)[1])
        time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    time.sleep(2)
    after, peak_total = memory(server.pid)
    peak = max(peak, peak_total)
    start = time.monotonic()
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)
    stopped = time.monotonic() - start
    return report(results, health, valid, unloaded, idle, peak, after, stopped, server.returncode)


def report(results, health, valid, unloaded, idle, peak, after, stopped, code):
    failures = []
    print(f"{'attack':34} {'runs':>5} {'clean':>6} {'slowest s':>10}  answers")
    for name, runs in sorted(results.items()):
        good = sum(ok for _, _, ok in runs)
        answers = sorted({str(a) for a, _, _ in runs})
        print(f"{name:34} {len(runs):5} {good:6} {max(t for _, t, _ in runs):10.2f}  {', '.join(answers)}")
        if good != len(runs):
            failures.append(f"{name}: {len(runs) - good} of {len(runs)} not clean in time")
    health_p99 = sorted(health)[int(0.99 * (len(health) - 1))]
    valid_ok = [t for s, t in valid if s == 200]
    valid_median = statistics.median(valid_ok) if valid_ok else float("inf")
    bound = idle + 3 * MAX_BYTES_IN_FLIGHT + DECODE_THREADS * 6 * MAX_IMAGE_PIXELS + 64 * MIB
    print(f"/health: {len(health)} polls, p99 {health_p99 * 1000:.1f} ms (bound 100 ms)")
    print(f"valid request: unloaded median {unloaded * 1000:.1f} ms, under attack median {valid_median * 1000:.1f} ms "
          f"over {len(valid_ok)} answers of {len(valid)} (bound 2x)")
    print(f"resident memory: idle {idle / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB (bound {bound / MIB:.0f}), "
          f"after {after / MIB:.0f} MiB (bound idle + 64)")
    print(f"SIGTERM: exit {code} after {stopped:.2f} s (bound 3 s drain + 1)")
    if health_p99 > 0.1:
        failures.append("/health p99 over 100 ms")
    if len(valid_ok) != len(valid) or valid_median > 2 * unloaded:
        failures.append("valid requests slowed more than 2x or failed")
    if peak > bound or after > idle + 64 * MIB:
        failures.append("resident memory over its bound")
    if code != 0 or stopped > 4:
        failures.append("SIGTERM did not end the server cleanly in time")
    for failure in failures:
        print("FAIL:", failure)
    print("soak: " + ("failed" if failures else "passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
