#!/usr/bin/env bash
# The README's main command: install dependencies, build the CPU preset, plan Wan2.1-720p on 8 GPUs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset cpu >/dev/null
cmake --build --preset cpu -j "$(nproc)" --target dbsp
./build/cpu/tools/dbsp plan --workload wan2.1-720p --gpus 8 "$@"
