#!/usr/bin/env bash
# A newcomer's first hour, replayed offline on a clone: the README's first command without the Hub (it must say how
# to get weights), a random checkpoint from `inception init` classifying the shipped photo, a model trained for one
# epoch on a generated two-class folder, then classified, evaluated and served with its own class names. Every
# step's output is checked; the first failure stops the script with a line naming it.
#
#   scripts/first_hour.sh            (builds in release first; CI runs it from scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_dependencies.sh
swift build -c release 2>&1 | tail -n 1
inception=$PWD/.build/release/inception
work=$(mktemp -d "${TMPDIR:-/tmp}/first-hour.XXXXXX")
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
export HF_HUB_OFFLINE=1 HF_HUB_CACHE="$work/hub-cache"  # no Hub, an empty cache

step() { echo "== $*"; }
fail() { echo "first_hour: FAILED: $*" >&2; exit 1; }
expect() {  # expect DESCRIPTION PATTERN FILE: the file holds a line matching the extended regular expression
  grep -Eq -- "$2" "$3" || { cat "$3" >&2; fail "$1 (no line matching '$2')"; }
}

step "the README's first command, offline: one line naming --weights, HF_ENDPOINT and the cache"
if "$inception" classify examples/cat.jpg >"$work/out" 2>"$work/err"; then fail "classify without weights succeeded"; fi
[ "$(wc -l <"$work/err")" -eq 1 ] || { cat "$work/err" >&2; fail "the offline error is not one line"; }
expect "offline hint" "--weights FILE.*\.pt.*inception init.*HF_ENDPOINT.*$HF_HUB_CACHE" "$work/err"
step "a missing image is named before any weights are looked for"
if "$inception" classify missing.jpg 2>"$work/err"; then fail "a missing image was accepted"; fi
expect "missing image" "^error: cannot read image missing.jpg" "$work/err"

step "--version and the list of networks"
"$inception" --version | tee "$work/out"
expect "version" '^[0-9]+\.[0-9]+\.[0-9]+' "$work/out"
"$inception" models --json >"$work/out"
expect "models" '"name" : "inception_resnet_v1_facenet"' "$work/out"

step "init: a random Inception-v4 checkpoint classifies the shipped photo"
"$inception" init --model inception_v4 --seed 1 --output "$work/v4.safetensors" | tee "$work/out"
expect "init" "inception_v4, 42,679,816 parameters" "$work/out"
"$inception" classify --weights "$work/v4.safetensors" examples/cat.jpg | tee "$work/out"
[ "$(grep -c '^  [1-5]\. ' "$work/out")" -eq 5 ] || fail "classify did not print a top-5"

step "a generated two-class folder (stripes across and down), 6 images each"
python3 - "$work/data" <<'PY'
import os, random, struct, sys, zlib
def png(path, pixel, size=96):
    rows = b"".join(b"\x00" + bytes(c for x in range(size) for c in pixel(x, y)) for y in range(size))
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
rng = random.Random(7)
for name, across in (("across", True), ("down", False)):
    os.makedirs(os.path.join(sys.argv[1], name))
    for i in range(6):
        period, shade = rng.randint(6, 14), rng.randint(0, 80)
        def pixel(x, y):
            v = 255 if ((y if across else x) // period) % 2 else shade
            return (v, v, min(255, v + rng.randint(0, 20)))
        png(os.path.join(sys.argv[1], name, f"{i}.png"), pixel)
PY

step "train one epoch (a reduced-depth Inception-ResNet-v1 at 99×99)"
train=("$inception" train --model inception_resnet_v1 --repeats 1,1,1 --input-size 99 --epochs 1 --batch-size 4
       --data "$work/data" --output "$work/run")
"${train[@]}" 2>&1 | tee "$work/out"
expect "epoch line" "^epoch 1: loss [0-9.]+, train accuracy" "$work/out"
expect "checkpoint line" "^checkpoint: $work/run/model.safetensors" "$work/out"
step "training into the same folder again is refused, and --overwrite starts over"
if "${train[@]}" >"$work/out" 2>"$work/err"; then fail "a second run overwrote the first"; fi
expect "existing run" "already holds a training run \(--resume continues it, --overwrite" "$work/err"
"${train[@]}" --overwrite --json >"$work/out"
expect "train --json" '"classes" : \[' "$work/out"
step "curves of the one-epoch run show its points"
"$inception" curves "$work/run" --output "$work/curves.svg" --json >"$work/out"
expect "curves" "<circle" "$work/curves.svg"
expect "curves --json" '"epochs" : 1' "$work/out"
step "embed and preprocess say what they wrote with --json, at the trained input size"
"$inception" embed --weights "$work/run/model.safetensors" "$work/data/down/0.png" --output "$work/e.npy" --json \
  >"$work/out"
expect "embed --json" '"shape" : \[' "$work/out"
"$inception" preprocess --model inception_resnet_v1 --input-size 99 "$work/data/down/0.png" --output "$work/x.npy" \
  --json >"$work/out"
expect "preprocess --json" '"shape" : \[' "$work/out"
"$inception" predict --weights "$work/run/model.safetensors" --input "$work/x.npy" --output "$work/y.npy" --json \
  >"$work/out"
expect "predict --json" '"shape" : \[' "$work/out"

step "the trained model classifies and evaluates with its own class names (no --model: the checkpoint says)"
"$inception" classify --weights "$work/run/model.safetensors" "$work/data/across/0.png" --top 5 | tee "$work/out"
expect "class names" "^  1\. .*(across|down)$" "$work/out"
[ "$(grep -c '^  [1-5]\. ' "$work/out")" -eq 2 ] || fail "--top 5 on two classes did not show the two"
"$inception" eval --weights "$work/run/model.safetensors" "$work/data" --json | tee "$work/out"
expect "eval of the training folder" '"images" : 12' "$work/out"
step "an unreadable image among others is reported, the rest classified, exit status 1"
echo "not an image" >"$work/bad.jpg"
if "$inception" classify --weights "$work/run/model.safetensors" "$work/bad.jpg" "$work/data/down/1.png" \
  >"$work/out" 2>"$work/err"; then fail "a bad image gave exit status 0"; fi
expect "the good image" "down/1.png" "$work/out"
expect "the bad image" "bad.jpg" "$work/err"

step "serve the trained model, and ask it over HTTP"
"$inception" serve --weights "$work/run/model.safetensors" --port 0 >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do grep -q "listening on" "$work/serve.log" && break; sleep 0.1; done
port=$(grep -Eo 'http://127\.0\.0\.1:[0-9]+' "$work/serve.log" | grep -Eo '[0-9]+$') || fail "serve did not start"
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$port/v1/models" | tee "$work/out"; echo
expect "served class names" '"class_names":\["across","down"\]' "$work/out"
curl -sf --data-binary @"$work/data/across/2.png" \
  "http://127.0.0.1:$port/v1/models/inception_resnet_v1/classify?top=5" | tee "$work/out"; echo
expect "served top-2" '"label":"(across|down)".*"label":"(across|down)"' "$work/out"
step "a second server on the same port names the port"
if "$inception" serve --weights "$work/run/model.safetensors" --port "$port" 2>"$work/err" >/dev/null; then
  fail "a second server started on a busy port"
fi
expect "busy port" "port $port .*already in use" "$work/err"
kill -TERM "$server"; wait "$server" || true; server=""
echo "first_hour: every step as expected"
