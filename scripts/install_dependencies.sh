#!/usr/bin/env bash
# The system libraries the image decoders build against (Debian: libjpeg-turbo, libpng, pkg-config), installed
# when missing — with sudo when not root, without it when root (a container has no sudo). Elsewhere it does nothing.
# With --tests, also Open MPI (openmpi-bin, libopenmpi-dev), which the data-parallel training tests launch with
# mpirun; the package itself loads MPI only at run time and builds without it.
set -euo pipefail
packages=(libjpeg62-turbo-dev libpng-dev pkg-config)
[ "${1:-}" = "--tests" ] && packages+=(openmpi-bin libopenmpi-dev)
if command -v dpkg >/dev/null && ! dpkg -s "${packages[@]}" >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${packages[@]}"
fi
