#!/usr/bin/env python3
"""The parts of scripts/container_check.sh that speak HTTP to the server in the container.

    python scripts/container_client.py ready HOST:PORT SECONDS
        waits until /ready answers 200 (exit 1 after SECONDS)
    python scripts/container_client.py v1 HOST:PORT INCEPTION WEIGHTS PHOTO
        /v1 classify and embed of PHOTO against `inception classify --json` and `inception embed` of the same
        weights on this machine: the same classes and probabilities, the same embedding, bit for bit
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import numpy as np


def ready(address, seconds):
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{address}/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.2)
    sys.exit(f"container_check: FAILED: /ready did not answer 200 within {seconds} s")


def post(address, path, photo):
    with open(photo, "rb") as f:
        request = urllib.request.Request(f"http://{address}{path}", data=f.read(), method="POST",
                                         headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def inception(executable, *arguments):
    result = subprocess.run([executable, *arguments, "--threads", "1"], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"container_check: FAILED: inception {' '.join(arguments)}: {result.stderr.strip()}")
    return result.stdout


def v1(address, executable, weights, photo):
    served = post(address, "/v1/models/inception_v4/classify", photo)["predictions"]
    local = json.loads(inception(executable, "classify", "--weights", weights, "--json", photo))[0]["predictions"]
    if served != local:
        sys.exit(f"container_check: FAILED: /v1 classify {served[:1]} differs from inception classify {local[:1]}")
    embedding = np.array(post(address, "/v1/models/inception_v4/embed", photo)["embedding"], dtype=np.float32)
    with tempfile.TemporaryDirectory() as folder:
        output = os.path.join(folder, "embedding.npy")
        inception(executable, "embed", "--weights", weights, "--no-detect", "--output", output, photo)
        expected = np.load(output)[0]
    if embedding.shape != expected.shape or embedding.tobytes() != expected.tobytes():
        sys.exit("container_check: FAILED: /v1 embed differs from inception embed")
    print(f"container_check: /v1 classify and embed equal inception classify and embed "
          f"(top-1 {local[0]['label']}, {len(embedding)} features)")


if __name__ == "__main__":
    {"ready": ready, "v1": v1}[sys.argv[1]](*sys.argv[2:])
