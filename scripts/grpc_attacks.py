#!/usr/bin/env python3
"""The gRPC port of `inception serve` under attack (issue #41), with raw HTTP/2 frames (python-h2), on loopback.

Each case is what a hostile client did to the server at a383341, and what must hold now:
  negative-timeout  `grpc-timeout: -5S` (and other malformed timeouts): INVALID_ARGUMENT, the server goes on.
  stalled           10 connections x 16 streams, each sending all but the last byte of a message just under
                    --max-body-bytes: the bytes held stay within --max-bytes-in-flight (the rest RESOURCE_EXHAUSTED,
                    with a retry hint), and the server's memory with them.
  amplification     a message of 8,000,000 empty `inputs`, and a BYTES tensor of 4,000,000 empty elements:
                    INVALID_ARGUMENT for under 2 s of the server's CPU and 64 MiB, /health answering meanwhile.
  echo              a 1 MB model name, a 300,000-dimension shape, a 200-character model name: every status
                    message under 1 KB.
  stream-limit      a 17th stream on a connection advertised 16: that stream alone refused (RST_STREAM
                    REFUSED_STREAM), the 16 answered.
  frames            1,000 calls of random headers and DATA frames (seeded; the seed printed): the server stays up.
  drain             24 ModelInfer calls in flight, then SIGTERM: every call answered OK, the server exits 0.
  drain-deadline    the same past a --drain-timeout of 3 s: each call OK or UNAVAILABLE, never CANCELLED.
Usage: scripts/grpc_attacks.py [CASE ...]   (the reference venv's python, after `swift build -c release`)
"""
import http.client
import os
import signal
import socket
import struct
import sys
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import numpy as np
from tritonclient.grpc import service_pb2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load_test import Server  # noqa: E402  (starts `inception serve` on free ports and waits for /ready)

MODEL = "inception_resnet_v1_facenet"
MIB = 1 << 20
MAX_BODY, IN_FLIGHT = 16 * MIB, 128 * MIB
OK, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND, RESOURCE_EXHAUSTED, UNAVAILABLE = 0, 3, 4, 5, 8, 14
REFUSED_STREAM = 7


def framed(message):
    return struct.pack(">BI", 0, len(message)) + message


class Connection:
    """One HTTP/2 connection speaking gRPC's framing; answers collected per stream."""

    def __init__(self, port, timeout=60):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                           validate_outbound_headers=False, validate_inbound_headers=False)
        self.h2 = h2.connection.H2Connection(config)
        self.h2.local_settings.initial_window_size = 1 << 30
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(1 << 30)
        self.answers, self.closed, self.settings = {}, False, False
        self.flush()
        self.pump(lambda: self.settings or self.closed, 10)

    def flush(self):
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def open(self, method, extra=()):
        stream = self.h2.get_next_available_stream_id()
        headers = [(":method", "POST"), (":scheme", "http"), (":path", f"/inference.GRPCInferenceService/{method}"),
                   (":authority", "127.0.0.1"), ("content-type", "application/grpc"), ("te", "trailers")]
        self.h2.send_headers(stream, headers + list(extra))
        self.answers[stream] = {}
        self.flush()
        return stream

    def send(self, stream, data, end=False):
        """Sends `data` within flow control; False when the server closed the stream first."""
        while data:
            if self.answers[stream].get("done") or self.closed:
                return False
            window = min(self.h2.local_flow_control_window(stream), self.h2.max_outbound_frame_size)
            if window == 0:
                self.pump(lambda: self.h2.local_flow_control_window(stream) > 0 or self.answers[stream].get("done"), 30)
                continue
            try:
                self.h2.send_data(stream, data[:window])
            except h2.exceptions.StreamClosedError:
                return False
            sent = getattr(self, "sent", 0) + window
            data, self.sent = data[window:], sent % MIB
            self.flush()
            if sent >= MIB:
                self.pump(lambda: False, 0.001)  # a refusal stops the sending
        if end:
            try:
                self.h2.end_stream(stream)
                self.flush()
            except h2.exceptions.StreamClosedError:
                return False
        return True

    def call(self, method, message, extra=()):
        stream = self.open(method, extra)
        self.send(stream, framed(message), end=True)
        return stream

    def pump(self, until, timeout):
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                break
            except OSError:
                data = b""
            if not data:
                self.closed = True
                break
            for event in self.h2.receive_data(self.after_goaway(data)):
                self.event(event)
            self.flush()
        return until()

    def after_goaway(self, data):
        """The frames for h2 to read: all of them until the server's GOAWAY; after it, h2 reads no more (it takes
        the connection as closed), so the calls' answers and the server's PING are read here, as a client that
        reads on does (the server closes the connection once its PING is answered and its calls are)."""
        self.pending = getattr(self, "pending", b"") + data
        passed = b""
        while len(self.pending) >= 9:
            length = int.from_bytes(self.pending[:3], "big")
            if len(self.pending) < 9 + length:
                break
            frame, self.pending = self.pending[:9 + length], self.pending[9 + length:]
            if not getattr(self, "goaway_seen", False):
                passed += frame
                self.goaway_seen = frame[3] == 7
            else:
                self.late_frame(frame)
        return passed

    def late_frame(self, frame):
        kind, flags, stream, payload = frame[3], frame[4], int.from_bytes(frame[5:9], "big") & 0x7FFFFFFF, frame[9:]
        answer = self.answers.get(stream, {})
        if kind == 6 and not flags & 1:  # PING: answered
            self.sock.sendall(frame[:4] + b"\x01" + frame[5:])
        elif kind == 1:  # HEADERS (the server sends END_HEADERS, no padding, no priority)
            for name, value in self.h2.decoder.decode(payload):
                answer.setdefault(name if isinstance(name, str) else name.decode(),
                                  value if isinstance(value, str) else value.decode())
            answer["done"] = answer.get("done") or "grpc-status" in answer
        elif kind == 3:  # RST_STREAM
            answer.update(reset=int.from_bytes(payload[:4], "big"), done=True)

    def event(self, event):
        answer = self.answers.get(getattr(event, "stream_id", None), {})
        if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
            for name, value in event.headers:
                answer.setdefault(name, value)
            if "grpc-status" in answer:
                answer["done"] = True
        elif isinstance(event, h2.events.DataReceived):
            answer["data"] = answer.get("data", b"") + event.data
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            answer.update(reset=event.error_code, done=True)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings = True
        elif isinstance(event, h2.events.ConnectionTerminated):  # a GOAWAY: the calls on it may still be answered
            self.goaway = event.error_code

    def wait(self, streams, timeout=60):
        return self.pump(lambda: all(self.answers[s].get("done") for s in streams) or self.closed, timeout)

    def status(self, stream):
        answer = self.answers[stream]
        if "grpc-status" in answer:
            return int(answer["grpc-status"])
        return f"reset {answer['reset']}" if "reset" in answer else "no answer"

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def resident(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))


def unary(port, method, message, extra=(), timeout=60):
    """One call on a connection of its own: its status and its grpc-message."""
    with Connection(port) as c:
        stream = c.call(method, message, extra)
        c.wait([stream], timeout)
        return c.status(stream), c.answers[stream].get("grpc-message", "")


def past_the_limit(port):
    """As many calls as the server advertises left open, then one more, as a hostile client would, then the first
    ones completed: (the advertised limit, the extra stream's reset code, the others' statuses, whether the
    connection got a GOAWAY)."""
    with Connection(port, timeout=30) as c:
        advertised = c.h2.remote_settings.max_concurrent_streams
        streams = [c.open("ServerLive") for _ in range(advertised)]
        c.h2.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = 1000
        c.h2.remote_settings.acknowledge()
        extra = c.open("ServerLive")
        c.wait([extra], 30)
        for stream in streams:
            c.send(stream, framed(b""), end=True)
        c.wait(streams, 30)
        return advertised, c.answers[extra].get("reset"), [c.status(s) for s in streams], hasattr(c, "goaway")


def alive(server):
    return unary(server.grpc_port, "ServerLive", b"", timeout=30)[0] == OK


def face_request(rows=1):
    x = np.random.default_rng(rows).standard_normal((rows, 3, 160, 160), dtype=np.float32)
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    del tensor
    request.raw_input_contents.append(x.tobytes())
    return request.SerializeToString()


def negative_timeout(server):
    results = [(value, *unary(server.grpc_port, "ServerLive", b"", [("grpc-timeout", value)], timeout=30))
               for value in ("-5S", "-1m", "+5S", "0x10S", "123456789S", "5", "S", "5s", "-99999H")]
    ok = all(status == INVALID_ARGUMENT and "grpc-timeout" in message for _, status, message in results)
    return ok and alive(server), f"{len(results)} malformed timeouts: {sorted(set(r[1] for r in results))}"


def stalled(server, connections=10, streams=16):
    before = resident(server.process.pid)
    length = MAX_BODY - 64
    held = []
    peak = before
    for _ in range(connections):
        c = Connection(server.grpc_port)
        for _ in range(streams):
            stream = c.open("ModelInfer")
            message = framed(b"\x00" * length)
            c.send(stream, message[:1024])
            c.pump(lambda: c.answers[stream].get("done"), 0.05)  # refused from the length prefix, or taken
            c.send(stream, message[1024:-1])
            held.append((c, stream))
        peak = max(peak, resident(server.process.pid))
        c.pump(lambda: False, 0.05)
    time.sleep(1)
    peak = max(peak, resident(server.process.pid))
    for c in {c for c, _ in held}:
        c.pump(lambda: False, 0.1)
    refused = [(c, s) for c, s in held if c.answers[s].get("done")]
    statuses = {c.status(s) for c, s in refused}
    pushback = all(c.answers[s].get("grpc-retry-pushback-ms") == "1000" for c, s in refused)
    waiting = len(held) - len(refused)
    for c in {c for c, _ in held}:
        c.close()
    grown = peak - before
    # Each admitted message reserves 4 x its bytes; what is held is at most the budget's quarter of raw bytes.
    bound = IN_FLIGHT + 64 * MIB
    ok = statuses <= {RESOURCE_EXHAUSTED} and pushback and waiting >= 1 and grown <= bound and alive(server)
    return ok, (f"{len(held)} stalled messages of {length} bytes: {waiting} held, {len(refused)} refused "
                f"RESOURCE_EXHAUSTED (pushback 1000 ms); resident memory {before / MIB:.0f} -> peak "
                f"{peak / MIB:.0f} MiB (+{grown / MIB:.0f}, bound +{bound / MIB:.0f})")


def amplification(server):
    health, stop = [], threading.Event()

    def poll():
        while not stop.is_set():
            start = time.monotonic()
            c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            c.request("GET", "/health")
            c.getresponse().read()
            health.append(time.monotonic() - start)
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    before, cpu = resident(server.process.pid), cpu_seconds(server.process.pid)
    name = service_pb2.ModelInferRequest(model_name=MODEL).SerializeToString()
    empty_inputs = name + b"\x2a\x00" * ((MAX_BODY - len(name) - 16) // 2)
    contents = b"\x42\x00" * 4_000_000  # bytes_contents: 4,000,000 empty elements
    tensor = b"\x0a\x05image\x12\x05BYTES\x1a\x04\x80\x92\xf4\x01" + b"\x2a" + varint(len(contents)) + contents
    empty_elements = name + b"\x2a" + varint(len(tensor)) + tensor
    results = []
    for what, message in (("8,000,000 empty inputs", empty_inputs), ("4,000,000 empty BYTES", empty_elements)):
        c = Connection(server.grpc_port)
        stream = c.open("ModelInfer")
        c.send(stream, framed(message))
        sent = time.monotonic()
        c.send(stream, b"", end=True)
        c.wait([stream], 60)
        results.append((what, c.status(stream), time.monotonic() - sent, c.answers[stream].get("grpc-message", "")))
        c.close()
    peak, cpu = max(before, resident(server.process.pid)), cpu_seconds(server.process.pid) - cpu
    stop.set()
    poller.join()
    slowest = max(health)
    # The server's CPU time, not the wall time, bounds the work: a loaded machine delays an answer, it does not
    # spend the server's CPU (at a383341 the first message alone took ~15 s of it, and ~1 GB).
    ok = all(status == INVALID_ARGUMENT for _, status, _, _ in results) and cpu < 2 and peak - before < 64 * MIB
    detail = "; ".join(f"{what}: {status} after {took * 1000:.0f} ms ({message[:60]})"
                       for what, status, took, message in results)
    return ok, (f"{detail}; the server's CPU {cpu:.2f} s (bound 2); /health slowest {slowest * 1000:.0f} ms; "
                f"resident +{(peak - before) / MIB:.0f} MiB (bound 64)")


def varint(n):
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def echo(server):
    long_name = service_pb2.ModelInferRequest(model_name="m" * MIB).SerializeToString()
    dims = b"".join(b"\x18\x01" for _ in range(300_000))
    shape = b"\x0a\x05input\x12\x04FP32" + dims
    many_dims = service_pb2.ModelInferRequest(model_name=MODEL).SerializeToString() + b"\x2a" + varint(len(shape)) \
        + shape
    unknown = service_pb2.ModelInferRequest(model_name="x" * 200).SerializeToString()
    results = []
    for what, method, message in (("1 MB model name", "ModelInfer", long_name),
                                  ("300,000 dimensions", "ModelInfer", many_dims),
                                  ("a 200-character unknown model", "ModelInfer", unknown),
                                  ("ModelMetadata of a 1 MB name", "ModelMetadata",
                                   service_pb2.ModelMetadataRequest(name="m" * MIB).SerializeToString())):
        status, text = unary(server.grpc_port, method, message)
        results.append((what, status, len(text)))
    ok = all(isinstance(status, int) and status != OK and 0 < length < 1024 for _, status, length in results)
    return ok, "; ".join(f"{what}: status {status}, message {length} bytes" for what, status, length in results)


def stream_limit(server):
    advertised, refused, answered, goaway = past_the_limit(server.grpc_port)
    ok = advertised == 16 and refused == REFUSED_STREAM and answered == [OK] * 16 and not goaway
    return ok, (f"advertised {advertised}; stream 17: reset {refused} (REFUSED_STREAM is {REFUSED_STREAM}); "
                f"the 16: {sorted(set(map(str, answered)))}")


def drain(server, calls=24, expected=(OK,)):
    """SIGTERM with `calls` ModelInfer calls in flight: each answered with one of `expected`, the connections closed
    by the server once their calls are answered, the process ended with exit 0."""
    message = framed(face_request(rows=2))
    connections = [Connection(server.grpc_port) for _ in range(2)]
    streams = [(c, c.open("ModelInfer")) for c in connections for _ in range(calls // 2)]
    # All but each message's last byte first (slow in Python), then the last bytes at once: every call starts
    # within a moment of the others.
    for c, stream in streams:
        c.send(stream, message[:-1])
    for c, stream in streams:
        c.send(stream, message[-1:], end=True)
    time.sleep(0.2)
    for c in connections:
        c.pump(lambda: False, 0.01)
    in_flight = sum(not c.answers[s].get("done") for c, s in streams)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    for c in connections:
        c.wait([s for cc, s in streams if cc is c], 60)
        c.pump(lambda: c.closed, 60)  # the server's GOAWAY and PING answered, as a client does
    statuses = [c.status(s) for c, s in streams]
    code = server.process.wait(timeout=60)
    took = time.monotonic() - signalled
    ok = set(statuses) <= set(expected) and code == 0 and in_flight >= len(streams) // 2
    return ok, (f"{in_flight} of {len(streams)} calls of 2 images in flight at SIGTERM, answered {sorted(set(map(str, statuses)))}; exit {code} "
                f"{took:.1f} s after the signal")


def drain_deadline(server):
    """Past --drain-timeout (3 s; calls of a batch of 1 on one thread, about 4 s of work unloaded): answered OK or
    UNAVAILABLE, never CANCELLED."""
    return drain(server, calls=24, expected=(OK, UNAVAILABLE))


def frames(server, calls=1000, seed=None):
    """Random HEADERS and DATA frames through the whole stack (the gate, then grpc-swift's HTTP/2 and gRPC
    handlers): timeouts, encodings, content types, paths and extra headers drawn from what parsers trip on, messages
    of random prefixes, lengths and splits, streams ended or left open. The server must answer every call or reset
    its stream, and stay alive."""
    seed = seed if seed is not None else int.from_bytes(os.urandom(4), "little")
    rng = np.random.default_rng(seed)
    values = ["-5S", "+5S", "0S", "99999999H", "1", "", " 5S", "5S ", "1e3S", "\t", "-", "9" * 40, "5\u00e9S",
              "identity", "gzip", "deflate", "snappy", "*", "application/grpc", "application/grpc+proto",
              "application/json", "trailers", "x" * 4000]
    names = ["grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "content-type", "te", "grpc-message-type",
             "user-agent", "grpc-status", ":authority", "x-" + "a" * 100]
    methods = ["ServerLive", "ModelInfer", "ModelMetadata", "ModelReady", "ModelStreamInfer", "Nope", "", "../x"]
    answered = reset = 0
    c = Connection(server.grpc_port)
    for i in range(calls):
        if c.closed or hasattr(c, "goaway") or i % 50 == 0:
            c.close()
            c = Connection(server.grpc_port)
        extra = [(names[rng.integers(len(names))], values[rng.integers(len(values))])
                 for _ in range(rng.integers(0, 4))]
        try:
            stream = c.open(methods[rng.integers(len(methods))], extra)
            body = rng.integers(0, 256, rng.integers(0, 64), dtype=np.uint8).tobytes()
            if rng.random() < 0.6:
                body = struct.pack(">BI", int(rng.random() < 0.1), int(rng.integers(0, 1 << 24))
                                   if rng.random() < 0.2 else len(body)) + body
            cut = int(rng.integers(0, len(body) + 1))
            c.send(stream, body[:cut])
            c.send(stream, body[cut:], end=rng.random() < 0.8)
            c.wait([stream], 0.02 if rng.random() < 0.7 else 0.5)
        except (h2.exceptions.ProtocolError, OSError):
            c.closed = True
            continue
        answered += "grpc-status" in c.answers[stream]
        reset += "reset" in c.answers[stream]
    c.close()
    return alive(server) and server.process.poll() is None, \
        f"seed {seed}: {calls} random calls, {answered} answered with a status, {reset} reset; the server alive"


CASES = {"negative-timeout": negative_timeout, "stalled": stalled, "amplification": amplification, "echo": echo,
         "stream-limit": stream_limit, "frames": frames, "drain": drain, "drain-deadline": drain_deadline}
# Cases that end the server, each with a server of its own and its flags.
ENDING = {"drain": ["--max-batch", "1", "--threads", "1"],
          "drain-deadline": ["--drain-timeout", "3", "--max-batch", "1", "--threads", "1"]}


def main():
    names = sys.argv[1:] or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise SystemExit(f"unknown case {unknown[0]}; cases: {', '.join(CASES)}")
    flags = ["--drain-timeout", "30", "--max-body-bytes", str(MAX_BODY), "--max-bytes-in-flight", str(IN_FLIGHT)]
    shared = [n for n in names if n not in ENDING]
    runs = ([(shared, Server(MODEL, flags))] if shared else []) + [([n], None) for n in names if n in ENDING]
    failed = 0
    for cases, server in runs:
        server = server or Server(MODEL, flags + ENDING[cases[0]])
        try:
            for name in cases:
                ok, detail = CASES[name](server)
                print(f"grpc_attacks: {name}: {'ok' if ok else 'FAILED'} — {detail}", flush=True)
                failed += not ok
                if server.process.poll() is not None and name not in ENDING:
                    print(f"grpc_attacks: the server ended (exit {server.process.returncode})", flush=True)
                    return 1
        finally:
            if server.process.poll() is None:
                server.process.kill()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
