#!/usr/bin/env bash
# Installs what dbsp needs on a fresh Debian/Ubuntu machine (all from Debian packages and pip).
set -euo pipefail
need=(cmake g++ make libcli11-dev nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev
      libomp-dev openmpi-bin libopenmpi-dev python3-numpy)
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
# NumPy writes the .npy files that the file-reader tests load.
python3 -c 'import numpy' 2>/dev/null || python3 -m pip install -q numpy
