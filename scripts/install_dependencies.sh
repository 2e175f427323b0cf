#!/usr/bin/env bash
# The system libraries the image decoders and the face gallery build against (Debian: libjpeg-turbo, libpng, SQLite,
# pkg-config), installed
# when missing — with sudo when not root, without it when root (a container has no sudo). Elsewhere it does nothing.
# With --tests, also Open MPI (openmpi-bin, libopenmpi-dev), which the data-parallel training and batch-job tests
# launch with mpirun (the package itself loads MPI only at run time and builds without it), and podman with runc and
# debootstrap, with which scripts/container_check.sh builds and runs the image, and chromium with its chromedriver,
# in which the server's page is tested (scripts/browser_check.py).
set -euo pipefail
packages=(libjpeg62-turbo-dev libpng-dev libsqlite3-dev pkg-config)
# podman and chromium with what Debian recommends beside them (podman's network stack's netavark, iptables for
# published ports; chromium's fonts).
containers=()
[ "${1:-}" = "--tests" ] && packages+=(openmpi-bin libopenmpi-dev) && containers=(podman runc debootstrap uidmap chromium chromium-driver)
if command -v dpkg >/dev/null && ! dpkg -s "${packages[@]}" "${containers[@]}" >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${packages[@]}"
  [ "${#containers[@]}" -eq 0 ] || $sudo apt-get install -y -q "${containers[@]}"
fi
