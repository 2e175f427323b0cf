#!/usr/bin/env python3
"""Checks a running `inception serve` with the real Triton client (tritonclient.http, the Open Inference Protocol),
against the `inception` command line on the same inputs: health and metadata; infer with FP32 and BYTES inputs, with
binary data on and off, at each --batches size (the images repeated to fill it), bitwise equal to `inception predict`; classification=5 equal to
`inception classify --top 5`; and the error paths, each raising InferenceServerException with the server's message.

    python scripts/triton_check.py --url 127.0.0.1:PORT --model M --weights W.safetensors --inception BIN \
        [--batches 1,3] IMAGE...

Prints one line per check; exits 1 at the first failure, naming it.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import tritonclient.http as http
from tritonclient.utils import InferenceServerException


def fail(message):
    print(f"triton_check: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)
    print(f"ok: {message}")


def inception(args, *arguments):
    result = subprocess.run([args.inception, *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"inception {' '.join(arguments)}: {result.stderr.strip()}")
    return result.stdout


def expect_error(call, fragment, what):
    try:
        call()
    except InferenceServerException as error:
        check(fragment in str(error), f"{what}: InferenceServerException '{error}'")
        return
    fail(f"{what}: no exception")


def infer(client, args, name, datatype, array, binary, outputs=None):
    tensor = http.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    wanted = [http.InferRequestedOutput(o, binary_data=binary) for o in (outputs or [])] or None
    return client.infer(args.model, [tensor], outputs=wanted)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--inception", required=True)
    parser.add_argument("--batches", default="1,3", help="batch sizes of the FP32 and BYTES checks")
    parser.add_argument("images", nargs="+")
    args = parser.parse_args()
    # Generous timeouts: in the test command the suite runs beside it on the same cores (a batch of 8 at 299² is a
    # few seconds alone).
    client = http.InferenceServerClient(url=args.url, connection_timeout=600.0, network_timeout=600.0)
    check(client.is_server_live(), "is_server_live")
    check(client.is_server_ready(), "is_server_ready")
    check(client.is_model_ready(args.model), "is_model_ready")
    server = client.get_server_metadata()
    check("binary_tensor_data" in server["extensions"] and "classification" in server["extensions"],
          f"get_server_metadata: {server}")
    metadata = client.get_model_metadata(args.model)
    size = metadata["inputs"][0]["shape"][2]
    check(metadata["name"] == args.model and [i["name"] for i in metadata["inputs"]] == ["input", "image"],
          f"get_model_metadata: inputs {metadata['inputs']}")
    check(not client.is_model_ready("no_such_model"), "is_model_ready is false for an unknown model")

    with tempfile.TemporaryDirectory() as scratch:
        x_path, y_path = os.path.join(scratch, "x.npy"), os.path.join(scratch, "y.npy")
        inception(args, "preprocess", "--model", args.model, "--input-size", str(size), "--output", x_path,
                  *args.images)
        x = np.load(x_path)
        inception(args, "predict", "--model", args.model, "--weights", args.weights, "--input", x_path,
                  "--output", y_path, "--result", "logits")
        expected = np.load(y_path)
    for batch in [int(b) for b in args.batches.split(",")]:
        rows = np.arange(batch) % len(x)  # the images, repeated to fill the batch
        for binary in (False, True):
            start = time.monotonic()
            got = infer(client, args, "input", "FP32", x[rows], binary, ["logits"]).as_numpy("logits")
            seconds = time.monotonic() - start
            check(np.array_equal(got, expected[rows]), f"FP32 input, batch {batch}, binary_data={binary}: logits "
                  f"bitwise equal to inception predict ({seconds:.2f} s)")
            encoded = np.array([open(args.images[r], "rb").read() for r in rows], dtype=np.object_)
            if binary:  # BYTES carry images only as binary data (JSON strings must be UTF-8)
                got = infer(client, args, "image", "BYTES", encoded, True, ["logits"]).as_numpy("logits")
                check(np.array_equal(got, expected[rows]),
                      f"BYTES image input, batch {batch}: logits bitwise equal to inception predict")

    top = json.loads(inception(args, "classify", "--model", args.model, "--weights", args.weights, "--json",
                               "--top", "5", *args.images))
    for binary in (False, True):
        tensor = http.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        result = client.infer(args.model, [tensor],
                              outputs=[http.InferRequestedOutput("logits", binary_data=binary, class_count=5)])
        rows = result.as_numpy("logits")
        for image, row, classified in zip(args.images, rows, top):
            entries = [(e.decode() if isinstance(e, bytes) else e).split(":", 2) for e in row]
            indices = [int(e[1]) for e in entries]
            labels = [e[2] for e in entries]
            check(indices == [p["index"] for p in classified["predictions"]]
                  and labels == [p["label"] for p in classified["predictions"]],
                  f"classification=5, binary_data={binary}, {os.path.basename(image)}: the top-5 of classify")

    expect_error(lambda: client.get_model_metadata("no_such_model"), "unknown model 'no_such_model'",
                 "unknown model")
    expect_error(lambda: infer(client, args, "input", "FP32", x[:, :, :size - 1, :size - 1], True),
                 f"must be FP32 [N, 3, {size}, {size}]", "wrong shape")
    expect_error(lambda: infer(client, args, "input", "INT32", x.astype(np.int32), True),
                 "datatype INT32 is not FP32 or BYTES", "wrong datatype")
    expect_error(lambda: infer(client, args, "image", "BYTES", np.array([b"not an image"], dtype=np.object_), True),
                 "not a JPEG or PNG image", "undecodable image")
    expect_error(lambda: infer(client, args, "input", "FP32", x[:1], True, ["no_such_output"]),
                 "has no output 'no_such_output'", "unknown output")
    print("triton_check: every check passed")


if __name__ == "__main__":
    main()
