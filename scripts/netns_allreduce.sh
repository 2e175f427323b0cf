#!/usr/bin/env bash
# Two ranks of `inception train` on two "hosts" made on this machine — network namespaces joined by a veth pair whose
# every direction `tc` limits to RATE — and the time their gradient sums take, against the ring-allreduce model
# 2(N − 1)/N · 8S/B for N = 2 (docs/distributed.md). mpirun runs in the first namespace and starts the second rank
# through `ip netns exec` (its launch agent); shared memory is turned off, so every byte crosses the link over TCP.
# Needs root (ip netns), Open MPI, iproute2 and a release build; inception_v4 at 75 px, so the link dominates.
# Then a batch job across the two hosts: `embed` on 2 ranks equals one process's output, byte for byte.
# Usage: scripts/netns_allreduce.sh [RATE_MBIT...=1000 400]    (RATE `batch`: the batch job alone, at 1000 Mbit/s)
set -euo pipefail
cd "$(dirname "$0")/.."
rates=("${@:-1000 400}")
read -r -a rates <<< "${rates[*]}"
batch_only=false
[ "${rates[0]}" = batch ] && batch_only=true && rates=(1000)
namespaces() { ip netns del inception-a 2>/dev/null || true; ip netns del inception-b 2>/dev/null || true; }
work=$(mktemp -d)
trap 'namespaces; rm -rf "$work"' EXIT
namespaces
ip netns add inception-a && ip netns add inception-b
ip link add inception-va type veth peer name inception-vb
ip link set inception-va netns inception-a && ip link set inception-vb netns inception-b
ip -n inception-a addr add 10.78.0.1/24 dev inception-va && ip -n inception-b addr add 10.78.0.2/24 dev inception-vb
for ns in a b; do ip -n "inception-$ns" link set "inception-v$ns" up; ip -n "inception-$ns" link set lo up; done
cat > "$work/agent" <<'EOF'
#!/bin/sh
# mpirun's launch agent: "agent HOST COMMAND..." runs COMMAND in the namespace that plays HOST.
host="$1"; shift
case "$host" in 10.78.0.1) ns=inception-a ;; 10.78.0.2) ns=inception-b ;; *) exit 1 ;; esac
exec ip netns exec "$ns" sh -c "$*"
EOF
chmod +x "$work/agent"
# Data and weights: 28 photos at 139 px and a start for them (as the DDP test makes them).
.build/release/inception init --model inception_v4 --classes 2 --output "$work/init.safetensors" > /dev/null
"${INCEPTION_VENV:-.venv-ref}/bin/python" -W ignore scripts/ddp_reference.py prepare "$work/data" \
  "$work/start.safetensors" "$work/init.safetensors" 139 --duplicate
# The bytes summed each step: every trainable parameter in float32.
bytes=$(python3 - "$work/start.safetensors" <<'PY'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
print(sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items()
          if k != "__metadata__" and "running" not in k and "num_batches" not in k))
PY
)
for rate in "${rates[@]}"; do
  for ns in a b; do
    ip netns exec "inception-$ns" tc qdisc replace dev "inception-v$ns" root tbf rate "${rate}mbit" burst 512kb latency 100ms
  done
  rm -rf "$work/run"
  "$batch_only" && break
  line=$(ip netns exec inception-a mpirun --allow-run-as-root --oversubscribe -np 2 --host 10.78.0.1,10.78.0.2 \
    --mca plm_rsh_agent "$work/agent" --mca btl tcp,self --mca btl_tcp_if_include 10.78.0.0/24 \
    --mca oob_tcp_if_include 10.78.0.0/24 "$PWD/.build/release/inception" train --model inception_v4 \
    --weights "$work/start.safetensors" --data "$work/data" --epochs 1 --batch-size 4 --input-size 75 \
    --optimizer sgd --lr 0.001 --seed 3 --threads 1 --json --output "$work/run" 2>/dev/null | grep '^{"epoch')
  python3 - "$line" "$rate" "$bytes" <<'PY'
import json, sys
m, rate, size = json.loads(sys.argv[1]), float(sys.argv[2]) * 1e6, int(sys.argv[3])
measured = m["gradientSumSeconds"] / m["steps"]
model = 2 * (2 - 1) / 2 * 8 * size / rate
print(f"{sys.argv[2]} Mbit/s: gradient sums {measured:.2f} s a step ({size / 1e6:.1f} MB), ring model {model:.2f} s, "
      f"measured/model {measured / model:.2f}; waited {m['gradientWaitSeconds'] / m['steps']:.2f} s a step")
PY
done
# A batch job across the two hosts (TCP only): rank 0 gathers rank 1's rows and writes the one file.
mapfile -t photos < <(find "$work/data" -type f | sort)
.build/release/inception embed --model inception_v4 --weights "$work/init.safetensors" --threads 1 \
  --output "$work/one.npy" "${photos[@]}" > /dev/null
ip netns exec inception-a mpirun --allow-run-as-root --oversubscribe -np 2 --host 10.78.0.1,10.78.0.2 \
  --mca plm_rsh_agent "$work/agent" --mca btl tcp,self --mca btl_tcp_if_include 10.78.0.0/24 \
  --mca oob_tcp_if_include 10.78.0.0/24 "$PWD/.build/release/inception" embed --model inception_v4 \
  --weights "$work/init.safetensors" --threads 1 --output "$work/two.npy" "${photos[@]}" > /dev/null
if cmp -s "$work/one.npy" "$work/two.npy"; then
  echo "batch job across the two hosts: embed of ${#photos[@]} images on 2 ranks equals one process's, byte for byte"
else
  echo "batch job across the two hosts: FAILED: the outputs differ"; exit 1
fi

