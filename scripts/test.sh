#!/usr/bin/env bash
# The project's test command: builds the reference venv (once), generates fresh reference tensors with timm
# (a new random seed each run unless INCEPTION_REFERENCE_SEED is set), then runs every test in release mode
# (model-level tests are 280× slower unoptimised).
set -euo pipefail
cd "$(dirname "$0")/.."
# The image decoders build against Debian's libjpeg-turbo and libpng; the MPI tests launch Open MPI's mpirun.
scripts/install_dependencies.sh --tests
venv="${INCEPTION_VENV:-.venv-ref}"
refs="${INCEPTION_REFERENCE_DIR:-.reference}"
scripts/setup_reference_venv.sh "$venv"
seed_args=()
[ -n "${INCEPTION_REFERENCE_SEED:-}" ] && seed_args=(--seed "$INCEPTION_REFERENCE_SEED")
"$venv/bin/python" -W ignore scripts/make_references.py --out "$refs" "${seed_args[@]}"
# The tests' files (checkpoints of training runs, about 0.5 GB each) go to a scratch folder removed at the end,
# whatever happens: a machine whose disk is nearly full must not fill up over repeated runs.
scratch=$(mktemp -d "${TMPDIR:-/tmp}/inception-tests.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
log="$scratch/test.log"
status=0
# Built with `swift build`, not by `swift test` (which compiles every module for testable imports): the README's
# `swift build -c release` / `swift run -c release` then reuse this build instead of starting over. No test uses
# @testable.
swift build -c release --build-tests 2>&1 | tee "$log" || status=$?
# INCEPTION_TUNE=0: models load with the built-in register tile instead of measuring theirs (up to 2 s and a line on
# stderr, once per model and binary) — every tile gives the same bits (TileIdentityTests), and the tests of the
# measuring itself (TileTuningTests, ConformanceTests) turn it on where they need it.
[ "$status" -eq 0 ] && { TMPDIR="$scratch" INCEPTION_TUNE=0 INCEPTION_VENV="$(cd "$venv" && pwd)" \
  INCEPTION_REFERENCE_DIR="$(cd "$refs" && pwd)" swift test -c release --skip-build "$@" 2>&1 | tee -a "$log" \
  || status=$?; }
# Our own code builds without a warning (the fresh build of CI shows every one; dependencies' are theirs).
if grep -E "/Sources/[A-Za-z]+/[^ ]+\.swift:[0-9]+:[0-9]+: warning:" "$log" | grep -v "/\.build/"; then
  echo "warnings in our own code (above)"; status=1
fi
# The whole suite also runs the soak test of the server under attack (bounded, about 40 s) and every fuzz target
# for a few seconds (so that a missing corpus or a broken fuzz build cannot come back unnoticed).
# So do the line-length check, the public API's (scripts/check_public_api.sh), the quiet library's, the replay of a newcomer's first
# hour (offline), the deploy/ manifests against their schemas, the container image built and run with podman
# (scripts/container_check.sh) and the documentation catalog's build, warnings as errors.
if [ "$#" -eq 0 ]; then
  "$venv/bin/python" scripts/soak.py --seconds 15 --references "$refs" 2>&1 | tee -a "$log" || status=1
  scripts/fuzz.sh 4 50000 2>&1 | tee -a "$log" || status=1
  scripts/check_lines.sh 2>&1 | tee -a "$log" || status=1
  scripts/check_public_api.sh 2>&1 | tee -a "$log" || status=1
  scripts/check_quiet_library.sh 2>&1 | tee -a "$log" || status=1
  scripts/first_hour.sh 2>&1 | tee -a "$log" || status=1
  "$venv/bin/python" -W ignore scripts/check_manifests.py 2>&1 | tee -a "$log" || status=1
  INCEPTION_VENV="$venv" INCEPTION_REFERENCE_DIR="$refs" scripts/container_check.sh 2>&1 | tee -a "$log" || status=1
  swift package generate-documentation --target Inception --target InceptionTraining --warnings-as-errors 2>&1 \
    | tail -n 3 | tee -a "$log" || status=1
fi
# A long parallel run buries failures mid-log: repeat them (with their detail lines) at the end.
if [ "$status" -ne 0 ]; then
  echo "---- failures (repeated from above); reproduce with INCEPTION_REFERENCE_SEED=$(grep -o '"seed": [0-9]*' "$refs/inception_v4/report.json" | head -n 1 | grep -o '[0-9]*$') ----"
  grep -A3 -E "recorded an issue|error:|FAIL:|FAILED|ERROR: libFuzzer|==ERROR" "$log" | grep -v -E "^(◇|✔)" | head -200 || true
fi
exit "$status"
