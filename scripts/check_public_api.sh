#!/usr/bin/env bash
# What `import Inception` gives a user, checked against the release build's modules (docs/design.md, "The public
# API"): the README's library example type-checks as a user's file, and the engine's internals do not resolve.
set -euo pipefail
cd "$(dirname "$0")/.."
modules=.build/release/Modules
[ -d "$modules" ] || { echo "check_public_api: build first (swift build -c release)"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The C modules' maps, the build's own (a "-tool" copy built for the host's plugins would define each twice).
mkdir "$work/maps"
for map in .build/release/*.build/module.modulemap; do
  case "$map" in *-tool.build/*) ;; *) ln -s "$PWD/$(dirname "$map")" "$work/maps/";; esac
done
# A system library's map stays in Sources (SwiftPM gives a package's clients its path, as here).
check() { swiftc -typecheck -I "$modules" -I "$work/maps" -I Sources/CSQLite \
  -Xcc -I -Xcc Sources/CInceptionReduced/include "$1" \
  > "$work/out.txt" 2>&1; }
# The README's example (between the first ```swift after "As a library" and its closing fence), as a function.
{
  echo "import Foundation"
  awk '/^As a library/ { on = 1 } on && /^```swift/ { inside = 1; next } inside && /^```/ { exit } inside' README.md \
    | sed -e '/^import Foundation/d' | awk '/^import / { print; next } { body = body "    " $0 "\n" }
      END { printf "func example(photoURL: URL, batch: Tensor) throws {\n%s    _ = (top5, logits)\n}\n", body }'
} > "$work/readme.swift"
check "$work/readme.swift" || { echo "check_public_api: the README's library example does not build:"; cat "$work/out.txt"
  cat "$work/readme.swift"; exit 1; }
# The vocabulary the API speaks in, by name, with nothing but `import Inception`.
cat > "$work/vocabulary.swift" <<'SWIFT'
import Inception
func vocabulary(_ t: Tensor, _ o: OutputName, _ p: Precision, _ a: ConvolutionAlgorithms, _ h: HubClient) throws {
    _ = try InceptionModel(.inceptionV4, randomSeed: 1, classes: 10)
    _ = try PrecisionRoute(.fp32).name
    _ = (ModelSpec.all.map(\.name), OutputName.logits, Parallel.defaultThreads)
}
SWIFT
check "$work/vocabulary.swift" || { echo "check_public_api: the public vocabulary does not build:"; cat "$work/out.txt"
  exit 1; }
# The engine's internals are not the user's: each must fail to resolve.
for internal in "PackedConvolution.self" "UncheckedSendable<Int>.self" "CompiledGraph.self" "Kernels.current" \
                "GraphBuilder.self" "JSON.self" "Benchmark.self" "SplitMix64.self"; do
  printf 'import Inception\nimport InceptionIO\nlet x = %s\n' "$internal" > "$work/internal.swift"
  if check "$work/internal.swift"; then echo "check_public_api: \`import Inception\` shows $internal"; exit 1; fi
  grep -q "cannot find '" "$work/out.txt" || { echo "check_public_api: $internal failed otherwise:"; cat "$work/out.txt"
    exit 1; }
done
echo "check_public_api: the README's example builds; the engine's internals are not shown"
