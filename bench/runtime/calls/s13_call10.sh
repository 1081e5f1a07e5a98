#!/usr/bin/env bash
# Session 13, call 10, on one H200: the session's last binary (ceec0f2: head chunks by default,
# connect, fine lists in huge pages, one chunk-timing helper in the emulator). The whole model at
# P = 16 and 8 with the default head chunks (no --head-chunks) and the probed link, every
# strategy; fine masks emulated at P = 8 (8 layers, two chunks); the NCCL tests at P = 1.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
for p in 16 8; do emulate_default $p; done
timeout 200 "$bin/dbsp" run --emulate 8 --workload wan2.1-720p --backend cuda --strategy all \
  --fine-keep 0.3 --layers 8 --steps 1 --link-gbps 220.8 --latency-us 91.3 --head-chunks 2 \
  --plan-ahead >"$out/emulate_fine_8.log" 2>&1
stamp "emulate fine 8 exit $?"
sed -n '/^summary/,$p' "$out/emulate_fine_8.log"
nccl_tests_np1
stamp done
