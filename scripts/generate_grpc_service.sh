#!/usr/bin/env bash
# Regenerates Sources/InceptionServer/Generated/: grpc_service.pb.swift (the messages, swift-protobuf) and
# grpc_service.grpc.swift (the server's side of `inference.GRPCInferenceService`, grpc-swift 2) from the service as the tritonclient wheel
# of the reference venv carries it, cut to the RPCs the server implements (scripts/grpc_service_descriptor.py).
# Run only when the service or a generator changes: the plugins' first build is slow, so the generated files are
# committed and the package never builds them. Needs protoc (Debian: protobuf-compiler), git and the reference venv
# (scripts/setup_reference_venv.sh). Usage: scripts/generate_grpc_service.sh [VENV=.venv-ref]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv-ref}"
version="$(sed -n 's/.*grpc\/grpc-swift-protobuf", from: "\([0-9.]*\)".*/\1/p' Package.swift)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" scripts/grpc_service_descriptor.py "$work/service.pb"
git clone -q --depth 1 --branch "$version" https://github.com/grpc/grpc-swift-protobuf "$work/generator"
swift build -c release --package-path "$work/generator" --product protoc-gen-grpc-swift-2
swift build -c release --package-path "$work/generator" --product protoc-gen-swift
bin="$work/generator/.build/release"
protoc --descriptor_set_in="$work/service.pb" --plugin="$bin/protoc-gen-swift" --swift_opt=Visibility=Internal \
  --swift_out=Sources/InceptionServer/Generated --plugin="$bin/protoc-gen-grpc-swift-2" \
  --grpc-swift-2_opt=Visibility=Internal,Client=false,Server=true \
  --grpc-swift-2_out=Sources/InceptionServer/Generated \
  grpc_service.proto
echo "Sources/InceptionServer/Generated/grpc_service.{pb,grpc}.swift from tritonclient" \
  "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("tritonclient"))'),"\
  "grpc-swift-protobuf $version"
