#!/usr/bin/env bash
# Session 9, call 2: the whole model (Wan2.1-720p, 40 layers, --plan-ahead) emulated at P = 4, 8
# and 16 with staging copies charged at the timed copy_rows cost (fixed + per row), and P = 8
# once more with copies free (--copy-gbps 1e6), to show their share.
set -uo pipefail
source bench/runtime/device_env.sh
out=${OUT:-/tmp/out}; mkdir -p "$out"
stamp() { echo "[$(date +%T)] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/device.txt"
emulate() {  # P chunks [extra flags]
  local log="$out/emulate_$1_chunks$2${3:+_free}.log"
  timeout 240 "$bin/dbsp" run --emulate "$1" --workload wan2.1-720p --backend cuda --strategy all \
    --layers 40 --steps 1 --link-gbps 193.9 --latency-us 68.1 --head-chunks "$2" --plan-ahead \
    ${3:-} >"$log" 2>&1
  stamp "emulate $1 chunks $2 '${3:-}' exit $?"
  sed -n '/^summary/,$p' "$log"
}
emulate 8 2
emulate 8 2 "--copy-gbps 1000000"
emulate 16 3
emulate 4 2
stamp done
