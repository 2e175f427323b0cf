#!/usr/bin/env python3
"""Checks a running `inception serve` with the real Triton client (tritonclient.http or tritonclient.grpc, the Open
Inference Protocol), against the `inception` command line on the same inputs: health and metadata; infer with FP32
and BYTES inputs at each --batches size (the images repeated to fill it), bitwise equal to `inception predict` —
over HTTP with binary data on and off, over gRPC in raw_input_contents (the client's way) and in the typed
`contents` (through the generated stub); classification=5 equal to `inception classify --top 5`; and the error
paths, each raising InferenceServerException with the server's message.

    python scripts/triton_check.py [--protocol http|grpc] --url 127.0.0.1:PORT --model M --weights W.safetensors \
        --inception BIN [--batches 1,3] IMAGE...

Prints one line per check; exits 1 at the first failure, naming it.
"""
import argparse
import json
import os
import tempfile
import time

import numpy as np
import tritonclient.grpc as grpc
import tritonclient.http as http
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from check_support import check, fail, run_inception


def inception(args, *arguments):
    return run_inception(args.inception, *arguments)


def expect_error(call, fragment, what):
    try:
        call()
    except InferenceServerException as error:
        check(fragment in str(error), f"{what}: InferenceServerException '{error}'")
        return
    fail(f"{what}: no exception")


def infer(client, args, name, datatype, array, binary, outputs=None, class_count=0):
    """Through the client: over HTTP binary or JSON as `binary` says; over gRPC always raw_input_contents."""
    if args.protocol == "grpc":
        tensor = grpc.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        wanted = [grpc.InferRequestedOutput(o, class_count=class_count) for o in (outputs or [])] or None
        return client.infer(args.model, [tensor], outputs=wanted, client_timeout=600.0)
    tensor = http.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    wanted = [http.InferRequestedOutput(o, binary_data=binary, class_count=class_count)
              for o in (outputs or [])] or None
    return client.infer(args.model, [tensor], outputs=wanted)


def typed_infer(args, name, array):
    """Over gRPC with the input in the typed `contents` (fp32_contents or bytes_contents), which tritonclient never
    sends: through the generated stub. Returns the logits from raw_output_contents."""
    import grpc as channels
    request = service_pb2.ModelInferRequest(model_name=args.model)
    tensor = request.inputs.add(name=name, datatype="FP32" if array.dtype == np.float32 else "BYTES",
                                shape=list(array.shape))
    if array.dtype == np.float32:
        tensor.contents.fp32_contents.extend(array.ravel().tolist())
    else:
        tensor.contents.bytes_contents.extend(list(array))
    request.outputs.add(name="logits")
    options = [("grpc.max_send_message_length", 1 << 30), ("grpc.max_receive_message_length", 1 << 30)]
    with channels.insecure_channel(args.url, options=options) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=600.0)
    shape = list(response.outputs[0].shape)
    return np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(shape)


def stub_call(args, request):
    """ModelInfer through the generated stub; returns the grpc.RpcError it raised, or None."""
    import grpc as channels
    options = [("grpc.max_send_message_length", 1 << 30), ("grpc.max_receive_message_length", 1 << 30)]
    with channels.insecure_channel(args.url, options=options) as channel:
        try:
            service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=600.0)
        except channels.RpcError as error:
            return error
    return None


def grpc_malformed(args, size):
    """Requests tritonclient cannot send: each refused with its status code and a message naming the fault."""
    def request(**tensor):
        r = service_pb2.ModelInferRequest(model_name=args.model)
        r.inputs.add(name="input", datatype="FP32", shape=[1, 3, size, size], **tensor)
        return r
    two_raw = request()
    two_raw.raw_input_contents.extend([b"\0" * 4, b"\0" * 4])
    short = request(contents=service_pb2.InferTensorContents(fp32_contents=[1.0, 2.0, 3.0]))
    string_k = request(contents=service_pb2.InferTensorContents(fp32_contents=[0.0] * (3 * size * size)))
    string_k.outputs.add(name="logits").parameters["classification"].string_param = "five"
    huge = request()
    huge.raw_input_contents.append(b"\0" * (17 << 20))
    for what, message, code, fragment in [
            ("two raw contents for one input", two_raw, "INVALID_ARGUMENT", "raw_input_contents has 2 entries"),
            ("too few typed values", short, "INVALID_ARGUMENT", "3 fp32_contents for a shape of"),
            ("classification as a string", string_k, "INVALID_ARGUMENT", "classification must be an int64")]:
        error = stub_call(args, message)
        check(error is not None and error.code().name == code and fragment in error.details(),
              f"{what}: {error.code().name if error else 'no error'} '{error.details() if error else ''}'")
    # Over --max-body-bytes the server's gate answers at the message's length prefix, before reading the rest (the
    # status is written before the stream is closed); the server goes on answering.
    error = stub_call(args, huge)
    check(error is not None and error.code().name == "RESOURCE_EXHAUSTED" and "larger than the limit" in error.details(),
          f"a message over the limit: {error.code().name if error else 'no error'} '{error.details() if error else ''}'")
    check(stub_call(args, string_k) is not None and stub_call(args, string_k).code().name == "INVALID_ARGUMENT",
          "the server answers after the message over the limit")


def grpc_overload(args, image):
    """More calls at once than the queue holds (the server runs with --max-queue 1): the ones past it are
    RESOURCE_EXHAUSTED with a retry hint (grpc-retry-pushback-ms), the others answered."""
    import grpc as channels
    request = service_pb2.ModelInferRequest(model_name=args.model)
    request.inputs.add(name="image", datatype="BYTES", shape=[1],
                       contents=service_pb2.InferTensorContents(bytes_contents=[image]))
    with channels.insecure_channel(args.url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        calls = [stub.ModelInfer.future(request, timeout=600.0) for _ in range(16)]
        codes, hints = [], []
        for call in calls:
            codes.append(call.code().name)
            hints += [v for k, v in (call.trailing_metadata() or []) if k == "grpc-retry-pushback-ms"]
    refused = codes.count("RESOURCE_EXHAUSTED")
    check(refused >= 1 and codes.count("OK") >= 1 and refused + codes.count("OK") == 16 and len(hints) == refused,
          f"16 calls at once, queue of 1: {codes.count('OK')} answered, {refused} RESOURCE_EXHAUSTED with "
          f"pushback {sorted(set(hints))} ms")


def grpc_stalled_call(args, image):
    """A call whose message never comes (the server runs with --body-timeout 1): DEADLINE_EXCEEDED from the server,
    naming the limit, long before the client's own deadline; then the server answers the next call."""
    import grpc as channels
    request = service_pb2.ModelInferRequest(model_name=args.model)
    request.inputs.add(name="image", datatype="BYTES", shape=[1],
                       contents=service_pb2.InferTensorContents(bytes_contents=[image]))

    def stalled():
        time.sleep(30)  # longer than the server's limit: the call is over before this yields
        yield request

    with channels.insecure_channel(args.url) as channel:
        call = channel.stream_unary("/inference.GRPCInferenceService/ModelInfer",
                                    request_serializer=service_pb2.ModelInferRequest.SerializeToString,
                                    response_deserializer=service_pb2.ModelInferResponse.FromString)
        start = time.monotonic()
        try:
            call(stalled(), timeout=20.0)
            error = None
        except channels.RpcError as e:
            error = e
        seconds = time.monotonic() - start
    check(error is not None and error.code().name == "DEADLINE_EXCEEDED" and "did not arrive within 1.0 s"
          in error.details() and seconds < 15, f"a stalled call: {error.code().name if error else 'no error'} "
          f"'{error.details() if error else ''}' after {seconds:.1f} s")
    check(stub_call(args, request) is None, "the server answers after the stalled call")


def health_and_metadata(client, args):
    """The health and metadata calls; returns the model's input size."""
    check(client.is_server_live(), "is_server_live")
    check(client.is_server_ready(), "is_server_ready")
    check(client.is_model_ready(args.model), "is_model_ready")
    grpc_ = args.protocol == "grpc"
    server = client.get_server_metadata(as_json=True) if grpc_ else client.get_server_metadata()
    check("binary_tensor_data" in server["extensions"] and "classification" in server["extensions"],
          f"get_server_metadata: {server}")
    metadata = client.get_model_metadata(args.model, as_json=True) if grpc_ else client.get_model_metadata(args.model)
    size = int(metadata["inputs"][0]["shape"][2])  # int64 as a string in the gRPC client's JSON
    check(metadata["name"] == args.model and [i["name"] for i in metadata["inputs"]] == ["input", "image"]
          and [int(d) for d in metadata["inputs"][0]["shape"]] == [-1, 3, size, size],
          f"get_model_metadata: inputs {metadata['inputs']}")
    check(not client.is_model_ready("no_such_model"), "is_model_ready is false for an unknown model")
    return size


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=["http", "grpc"], default="http")
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--inception", required=True)
    parser.add_argument("--batches", default="1,3", help="batch sizes of the FP32 and BYTES checks")
    parser.add_argument("--pressure", action="store_true",
                        help="only the gRPC overload and stalled-call checks (a server run with --max-queue 1 "
                             "--body-timeout 1)")
    parser.add_argument("images", nargs="+")
    args = parser.parse_args()
    # Generous timeouts: in the test command the suite runs beside it on the same cores (a batch of 8 at 299² is a
    # few seconds alone).
    client = (grpc.InferenceServerClient(url=args.url) if args.protocol == "grpc"
              else http.InferenceServerClient(url=args.url, connection_timeout=600.0, network_timeout=600.0))
    if args.pressure:
        grpc_overload(args, open(args.images[0], "rb").read())
        grpc_stalled_call(args, open(args.images[0], "rb").read())
        print("triton_check: every check passed")
        return
    size = health_and_metadata(client, args)

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
        encoded = np.array([open(args.images[r], "rb").read() for r in rows], dtype=np.object_)
        # HTTP: JSON, then binary data; gRPC: raw_input_contents, then the typed contents.
        for binary in (False, True):
            way = (f"raw_input_contents={binary}" if args.protocol == "grpc" else f"binary_data={binary}")
            start = time.monotonic()
            if args.protocol == "grpc" and not binary:
                got = typed_infer(args, "input", x[rows])
            else:
                got = infer(client, args, "input", "FP32", x[rows], binary, ["logits"]).as_numpy("logits")
            seconds = time.monotonic() - start
            check(np.array_equal(got, expected[rows]), f"FP32 input, batch {batch}, {way}: logits "
                  f"bitwise equal to inception predict ({seconds:.2f} s)")
            if args.protocol == "grpc" and not binary:
                got = typed_infer(args, "image", encoded)
            elif binary:  # over HTTP, BYTES carry images only as binary data (JSON strings must be UTF-8)
                got = infer(client, args, "image", "BYTES", encoded, True, ["logits"]).as_numpy("logits")
            else:
                continue
            check(np.array_equal(got, expected[rows]),
                  f"BYTES image input, batch {batch}, {way}: logits bitwise equal to inception predict")

    top = json.loads(inception(args, "classify", "--model", args.model, "--weights", args.weights, "--json",
                               "--top", "5", *args.images))
    for binary in (False, True) if args.protocol == "http" else (True,):
        rows = infer(client, args, "input", "FP32", x, binary, ["logits"], class_count=5).as_numpy("logits")
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
                 "datatype 'INT32' is not FP32 or BYTES", "wrong datatype")
    expect_error(lambda: infer(client, args, "image", "BYTES", np.array([b"not an image"], dtype=np.object_), True),
                 "not a JPEG or PNG image", "undecodable image")
    expect_error(lambda: infer(client, args, "input", "FP32", x[:1], True, ["no_such_output"]),
                 "has no output 'no_such_output'", "unknown output")
    if args.protocol == "grpc":
        grpc_malformed(args, size)
    print("triton_check: every check passed")


if __name__ == "__main__":
    main()
