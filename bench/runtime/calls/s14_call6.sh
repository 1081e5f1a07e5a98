#!/usr/bin/env bash
# Session 14, call 6, on one H200: the NCCL tests at P = 1 (with the staged upload's own test);
# the whole model emulated at P = 16 for dbsp alone with --rank-times (each rank's measured
# compute against its group's predicted work, grids without a ring).
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
nccl_tests 1
timeout 150 "$bin/dbsp" run --emulate 16 --workload wan2.1-720p --backend cuda --strategy dbsp \
  --layers 40 --steps 1 --link-gbps 220.8 --latency-us 91.3 --plan-ahead --rank-times \
  >"$out/emulate_16_ranks.log" 2>&1
stamp "emulate 16 ranks exit $?"
sed -n '/^summary/,/^dbsp/p' "$out/emulate_16_ranks.log"
stamp done
