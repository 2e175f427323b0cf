#!/usr/bin/env bash
# Builds the Containerfile with podman and runs the image as an operator would: the server starts, /ready answers,
# Triton's client (HTTP and gRPC) and /v1 get what `inception predict` and `classify` compute (bitwise), the process
# is not root, the HEALTHCHECK passes, SIGTERM ends it with status 0 within --drain-timeout, and a bad --weights path
# ends the container with one line and a non-zero status. Prints the image's size and its cold start.
#
# No image registry answers here, so the bases are made locally under the names the Containerfile uses:
# debian:bookworm-slim by debootstrap from the machine's Debian mirror, and the binary given to the Containerfile's
# `prebuilt` stage (--build-arg BINARY=prebuilt) — this checkout's release build and the Swift runtime libraries it
# loads — so the check takes a minute or two, not a second 10-minute build. The Containerfile is left as a user
# builds it (its default builds from source in the official Swift image).
# Needs a release build and the reference venv and files (scripts/test.sh makes them). Podman runs as root (through
# sudo for a user: rootless podman needs subordinate ids) with runc and explicit ulimits.
# Usage: scripts/container_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "container_check: $*"; }
since() { python3 -c "print(f'{$(date +%s.%N) - $1:.1f}')"; }  # seconds since a `date +%s.%N`, to 0.1 s
skip() { say "skipped: $*"; exit 0; }
sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
venv="${INCEPTION_VENV:-.venv-ref}"
refs="${INCEPTION_REFERENCE_DIR:-.reference}"
binary=.build/release/inception
[ -x "$binary" ] || { say "no release build at $binary (swift build -c release)"; exit 1; }
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  command -v apt-get >/dev/null || skip "podman is not installed and there is no apt-get to install it"
  { $sudo apt-get update -q && $sudo apt-get install -y -q podman runc debootstrap uidmap; } \
    >/dev/null || skip "podman could not be installed"
fi
podman=($sudo podman --runtime runc)
"${podman[@]}" info >/dev/null 2>&1 || skip "podman cannot run here: $("${podman[@]}" info 2>&1 | tail -n 1)"

base=docker.io/library/debian:bookworm-slim
if ! "${podman[@]}" image exists "$base" && ! timeout 30 "${podman[@]}" pull -q "$base" >/dev/null 2>&1; then
  say "no registry answers: making $base with debootstrap"
  root=$(mktemp -d)
  mirror=$(grep -h -o -E 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list \
             2>/dev/null | head -n 1 | tr -d ' ' || true)
  $sudo debootstrap --variant=minbase bookworm "$root" "${mirror:-http://deb.debian.org/debian}" >/dev/null
  $sudo rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/{doc,man,info}/*
  $sudo tar -C "$root" -c . | "${podman[@]}" import -q - "$base" >/dev/null
  $sudo rm -rf "$root"
fi

# The prebuilt binary (stripped) and the Swift runtime libraries it loads, where the Containerfile takes them.
prebuilt=.container/prebuilt
rm -rf "$prebuilt" && mkdir -p "$prebuilt/usr/local/bin" "$prebuilt/usr/lib/swift/linux"
strip -o "$prebuilt/usr/local/bin/inception" "$binary"
ldd "$binary" | awk '$3 ~ /\/lib\/swift\// { print $3 }' | xargs -I{} cp -L {} "$prebuilt/usr/lib/swift/linux/"
image=localhost/swift-inception:check
started=$(date +%s.%N)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"${podman[@]}" build -q --format docker --build-arg BINARY=prebuilt -t "$image" -f Containerfile . \
  >"$scratch/build.log" 2>&1 || { cat "$scratch/build.log"; say "FAILED: podman build"; exit 1; }
say "image built in $(since "$started") s, $(( $("${podman[@]}" image inspect "$image" --format '{{.Size}}') / 1000000 )) MB"

name="inception-check-$$"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http=$(free_port); grpc=$(free_port)
# The weights, readable by the image's user (uid 10001), mounted read-only.
mkdir -p "$scratch/weights" && chmod 755 "$scratch" "$scratch/weights"
weights="$scratch/weights/weights.safetensors"
install -m 644 "$refs/inception_v4/weights.safetensors" "$weights"
trap '"${podman[@]}" rm -f -t 0 "$name" >/dev/null 2>&1 || true; rm -rf "$scratch"' EXIT
run=("${podman[@]}" run --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 -v "$scratch/weights:/weights:ro")
started=$(date +%s.%N)
"${run[@]}" -d --name "$name" -p "127.0.0.1:$http:8080" -p "127.0.0.1:$grpc:8081" "$image" serve \
  --grpc-port 8081 --model inception_v4 --weights /weights/weights.safetensors --threads 2 --drain-timeout 20 \
  >/dev/null 2>"$scratch/podman.log"
until "$venv/bin/python" -W ignore scripts/container_client.py ready "127.0.0.1:$http" 1 2>/dev/null; do
  if [ "$("${podman[@]}" inspect "$name" --format '{{.State.Running}}')" != true ]; then
    say "FAILED: the container stopped before /ready: $("${podman[@]}" logs "$name" 2>&1 | tail -n 3)"; exit 1
  fi
  python3 -c "import sys; sys.exit($(since "$started") > 180)" || { say "FAILED: no /ready in 180 s"; exit 1; }
done
say "cold start (container start to /ready): $(since "$started") s"

user=$("${podman[@]}" top "$name" user | tail -n 1 | tr -d ' ')
[ "$user" != root ] && [ "$user" != 0 ] || { say "FAILED: the server runs as $user"; exit 1; }
say "the server runs as $user"
"${podman[@]}" healthcheck run "$name" >/dev/null || { say "FAILED: the HEALTHCHECK"; exit 1; }
photos=("$refs"/images/*.jpg)
for protocol in http grpc; do
  port=$http; [ "$protocol" = grpc ] && port=$grpc
  "$venv/bin/python" -W ignore scripts/triton_check.py --protocol "$protocol" --url "127.0.0.1:$port" \
    --model inception_v4 --weights "$weights" --inception "$binary" --batches 1,3 "${photos[@]:0:2}" | tail -n 1
done
"$venv/bin/python" -W ignore scripts/container_client.py v1 "127.0.0.1:$http" "$binary" "$weights" "${photos[0]}"

started=$(date +%s.%N)
"${podman[@]}" stop -t 30 "$name" >/dev/null 2>>"$scratch/podman.log"
stopped=$(since "$started")
status=$("${podman[@]}" inspect "$name" --format '{{.State.ExitCode}}')
[ "$status" = 0 ] && python3 -c "import sys; sys.exit(not $stopped < 20)" \
  || { say "FAILED: SIGTERM ended the server with status $status after $stopped s"; exit 1; }
say "SIGTERM: exit 0 after $stopped s"

set +e
bad=$("${run[@]}" --rm --no-healthcheck "$image" serve --weights /weights/missing.safetensors 2>&1 >/dev/null)
status=$?
set -e
lines=$(printf '%s\n' "$bad" | grep -c .)
[ "$status" -ne 0 ] && [ "$lines" = 1 ] && [[ "$bad" == error:*missing.safetensors* ]] \
  || { say "FAILED: a bad --weights path gave status $status and: $bad"; exit 1; }
say "a bad --weights path: status $status, $bad"
say "every check passed"
