#!/usr/bin/env bash
# Session 8, call 4: emulated P = 8 fine masks (720p, 8 layers; 4 in its first run) with fine schedules kept per
# strategy, with and without --plan-ahead.
set -uo pipefail
source bench/runtime/device_env.sh
out=${OUT:-/tmp/out}; mkdir -p "$out"
stamp() { echo "[$(date +%T)] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/device.txt"
for flag in "" "--plan-ahead"; do
  log="$out/emulate_fine_8${flag:+_ahead}.log"
  timeout 150 "$bin/dbsp" run --emulate 8 --workload wan2.1-720p --backend cuda \
    --strategy all --fine-keep 0.3 --layers 8 --steps 1 --link-gbps 193.9 --latency-us 68.1 \
    --head-chunks 2 $flag >"$log" 2>&1
  stamp "emulate fine 8 '$flag' exit $?"
  sed -n '/^summary/,$p' "$log"
  awk '$1 ~ /^[0-9]+$/ {printf "%s %s %s %s | ", $2, $3, $4, $11} END {print ""}' "$log"
done
stamp done
