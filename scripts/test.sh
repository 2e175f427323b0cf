#!/usr/bin/env bash
# The project's test command: builds the reference venv (once), generates fresh reference tensors with timm
# (a new random seed each run unless INCEPTION_REFERENCE_SEED is set), then runs every test in release mode
# (model-level tests are 280× slower unoptimised).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${INCEPTION_VENV:-.venv-ref}"
refs="${INCEPTION_REFERENCE_DIR:-.reference}"
scripts/setup_reference_venv.sh "$venv"
seed_args=()
[ -n "${INCEPTION_REFERENCE_SEED:-}" ] && seed_args=(--seed "$INCEPTION_REFERENCE_SEED")
"$venv/bin/python" -W ignore scripts/make_references.py --out "$refs" "${seed_args[@]}"
INCEPTION_VENV="$(cd "$venv" && pwd)" INCEPTION_REFERENCE_DIR="$(cd "$refs" && pwd)" swift test -c release "$@"
