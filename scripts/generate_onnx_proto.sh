#!/usr/bin/env bash
# Regenerates Sources/InceptionONNX/Generated/onnx.pb.swift, the ONNX schema's messages for swift-protobuf, from the
# onnx.proto that the onnx wheel of the reference venv ships. Run only when the schema or swift-protobuf changes:
# the plugin's first build is slow, so the generated file is committed and the package never builds the plugin.
# Needs protoc (Debian: protobuf-compiler) and the reference venv (scripts/setup_reference_venv.sh).
# Usage: scripts/generate_onnx_proto.sh [VENV=.venv-ref]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv-ref}"
proto_dir="$("$venv/bin/python" -c 'import onnx, os; print(os.path.dirname(onnx.__file__))')"
version="$(sed -n 's/.*apple\/swift-protobuf", from: "\([0-9.]*\)".*/\1/p' Package.swift)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone -q --depth 1 --branch "$version" https://github.com/apple/swift-protobuf "$work/swift-protobuf"
swift build -c release --package-path "$work/swift-protobuf" --product protoc-gen-swift
protoc --plugin="$work/swift-protobuf/.build/release/protoc-gen-swift" --swift_opt=Visibility=Internal \
  --swift_out=Sources/InceptionONNX/Generated -I "$proto_dir" "$proto_dir/onnx.proto"
echo "Sources/InceptionONNX/Generated/onnx.pb.swift from onnx $("$venv/bin/python" -c 'import onnx; print(onnx.__version__)'),"\
  "swift-protobuf $version"
