"""Writes the descriptor of the gRPC service `inception serve --grpc-port` answers, for protoc.

The service is Triton's `inference.GRPCInferenceService` (grpc_service.proto, which KServe's V2 protocol is the
core of) as the tritonclient wheel carries it, cut to the RPCs the server implements and the messages they reach:
the wire is the real client's own. Usage: python grpc_service_descriptor.py OUT.pb
"""
import sys

from google.protobuf import descriptor_pb2
import tritonclient.grpc.service_pb2 as service

SERVED = ["ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"]


def referenced(message, package):
    """The top-level message names a message's fields (its nested types' too) refer to."""
    names = set()
    for field in message.field:
        if field.type_name.startswith(package):
            names.add(field.type_name[len(package):].split(".")[0])
    for nested in message.nested_type:
        names |= referenced(nested, package)
    return names


def main(out):
    proto = descriptor_pb2.FileDescriptorProto()
    service.DESCRIPTOR.CopyToProto(proto)
    package = "." + proto.package + "."
    rpcs = [m for m in proto.service[0].method if m.name in SERVED]
    assert [m.name for m in rpcs] == SERVED, "the wheel's service lacks an RPC the server implements"
    del proto.service[0].method[:]
    proto.service[0].method.extend(rpcs)
    messages = {m.name: m for m in proto.message_type}
    wanted = {t[len(package):] for m in rpcs for t in (m.input_type, m.output_type)}
    frontier = set(wanted)
    while frontier:
        frontier = set().union(*(referenced(messages[name], package) for name in frontier)) - wanted
        wanted |= frontier
    kept = [m for m in proto.message_type if m.name in wanted]
    del proto.message_type[:]
    proto.message_type.extend(kept)
    del proto.dependency[:]  # model_config.proto: only the RPCs left out reach it
    files = descriptor_pb2.FileDescriptorSet()
    files.file.append(proto)
    with open(out, "wb") as f:
        f.write(files.SerializeToString())
    print(f"{proto.name}: {len(rpcs)} RPCs, {len(kept)} messages", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
