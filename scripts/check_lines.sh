#!/usr/bin/env bash
# No Swift line over 120 columns (characters, not bytes) in the package's sources and tests; generated code (each
# module's Generated/ folder: the ImageNet class list, the ONNX schema's and the gRPC service's protobuf code) aside.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 - Sources Tests <<'PY'
import pathlib, sys
long = [f"{path}:{number}: {len(line)} columns"
        for folder in sys.argv[1:] for path in sorted(pathlib.Path(folder).rglob("*.swift"))
        if "Generated" not in path.parts
        for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1) if len(line) > 120]
print("\n".join(long) if long else f"lines: none over 120 columns in {', '.join(sys.argv[1:])}")
sys.exit(1 if long else 0)
PY
