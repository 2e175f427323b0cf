#!/usr/bin/env bash
# The system libraries the image decoders build against (Debian: libjpeg-turbo, libpng, pkg-config), installed
# when missing — with sudo when not root, without it when root (a container has no sudo). Elsewhere it does nothing.
set -euo pipefail
packages=(libjpeg62-turbo-dev libpng-dev pkg-config)
if command -v dpkg >/dev/null && ! dpkg -s "${packages[@]}" >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -q
  $sudo apt-get install -y -q "${packages[@]}"
fi
