#!/usr/bin/env bash
# Builds the libFuzzer targets of every parser with AddressSanitizer and runs each for at most RUNS executions or
# SECONDS seconds, starting from the seed corpus in Fuzz/corpus/<target>. A crash, a sanitizer report or an input
# that takes longer than 10 s (a quadratic parse, a runaway resize) fails the script (libFuzzer exits non-zero and
# writes the input to .build-fuzz/crash-* or timeout-*). CI runs every target for a few seconds.
# Usage: scripts/fuzz.sh [SECONDS=600] [RUNS=1000000] [targets: safetensors npy image preprocess hub multipart pickle
# torchfile v2request grpc pairs]
# SwiftPM cannot link an executable built with -sanitize=fuzzer, so the targets are compiled with swiftc directly.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"; runs="${2:-1000000}"; shift 2 || true
targets=("${@:-safetensors npy image preprocess hub multipart pickle torchfile v2request grpc pairs}")
read -r -a targets <<< "${targets[*]}"
out=.build-fuzz
mkdir -p "$out"
flags=(-O -sanitize=fuzzer,address -parse-as-library -module-name FuzzTarget -package-name swift_inception)
io=Sources/InceptionIO
# The image decoders (C, with ASan) and the Swift files every image target needs.
decoders() {
  mkdir -p "$out/include"
  cp Sources/CImageDecode/include/image_decode.h "$out/include/"
  printf 'module CImageDecode {\n  header "image_decode.h"\n  export *\n}\n' > "$out/include/module.modulemap"
  clang -O1 -fsanitize=fuzzer-no-link,address $(pkg-config --cflags libpng libjpeg) -I Sources/CImageDecode/include \
    -c Sources/CImageDecode/image_decode.c -o "$out/image_decode.o"
  image_sources=(-Xcc -I"$out/include" "$io/Image.swift" "$io/FileInput.swift" Sources/Inception/Preprocessing.swift
                 Sources/InceptionEngine/Tensor.swift "$out/image_decode.o")
  image_libs=($(pkg-config --libs libpng libjpeg | sed 's/-l/-Xlinker -l/g'))
}
build() {
  case "$1" in
    safetensors)
      swiftc "${flags[@]}" Fuzz/SafeTensorsTarget.swift "$io/SafeTensors.swift" "$io/FileInput.swift" \
        "$io/FileOutput.swift" -o "$out/safetensors" ;;
    npy) swiftc "${flags[@]}" Fuzz/NPYTarget.swift "$io/NPY.swift" "$io/FileInput.swift" "$io/FileOutput.swift" \
           -o "$out/npy" ;;
    image) decoders; swiftc "${flags[@]}" Fuzz/ImageTarget.swift "${image_sources[@]}" "${image_libs[@]}" -o "$out/image" ;;
    preprocess)
      decoders
      swiftc "${flags[@]}" Fuzz/PreprocessTarget.swift "${image_sources[@]}" "${image_libs[@]}" -o "$out/preprocess" ;;
    hub) swiftc "${flags[@]}" Fuzz/HubTarget.swift Sources/InceptionHub/*.swift -o "$out/hub" ;;
    pickle) swiftc "${flags[@]}" Fuzz/PickleTarget.swift "$io/Unpickler.swift" "$io/TorchPickle.swift" -o "$out/pickle" ;;
    torchfile)
      swiftc "${flags[@]}" Fuzz/TorchFileTarget.swift "$io/PyTorchCheckpoint.swift" "$io/StoredZip.swift" \
        "$io/Unpickler.swift" "$io/TorchPickle.swift" "$io/FileInput.swift" "$io/FileOutput.swift" "$io/SafeTensors.swift" \
        -o "$out/torchfile" ;;
    multipart) swiftc "${flags[@]}" Fuzz/MultipartTarget.swift Sources/InceptionServer/Multipart.swift -o "$out/multipart" ;;
    v2request) swiftc "${flags[@]}" Fuzz/V2RequestTarget.swift Sources/InceptionServer/OpenInference.swift \
                 Sources/InceptionServer/JSONScanner.swift Sources/InceptionServer/JSONValue.swift \
                 Sources/InceptionServer/DecimalText.swift Sources/InceptionServer/InferenceError.swift \
                 -o "$out/v2request" ;;
    pairs) swiftc "${flags[@]}" Fuzz/PairsTarget.swift Sources/Inception/PairsFile.swift \
             Sources/Inception/Verification.swift -o "$out/pairs" ;;
    grpc) swiftc "${flags[@]}" Fuzz/GRPCTarget.swift Sources/InceptionServer/GRPCCallGate.swift \
            Sources/InceptionServer/GRPCMessageBounds.swift Sources/InceptionServer/InferenceError.swift -o "$out/grpc" ;;
    *) echo "unknown target $1" >&2; exit 2 ;;
  esac
}
for t in "${targets[@]}"; do
  echo "== $t: building"
  # (gold warns once per AddressSanitizer helper symbol; those lines say nothing)
  { build "$t" 2>&1; } | { grep -v "Cannot export local symbol" || true; }
  mkdir -p "$out/corpus-$t"
  echo "== $t: up to $runs runs or $seconds s"
  # Multipart bodies up to 1 MB, so that a parse worse than linear shows as a timeout.
  max_len=65536; [ "$t" = multipart ] && max_len=1048576
  "$out/$t" -runs="$runs" -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$out/crash-$t-" "$out/corpus-$t" "Fuzz/corpus/$t" 2>&1 | tail -n 12
done
