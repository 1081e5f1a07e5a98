#!/usr/bin/env bash
# Session 14, call 5, on one H200: bench_head_costs with its makespan column and summary, every
# head of four Wan2.1-720p layers, over 264 slots (two consumer warpgroups per SM) and 132.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
for slots in 264 132; do
  timeout 100 "$bin/bench_head_costs" wan2.1-720p 4 0 $slots >"$out/head_costs_$slots.log" 2>&1
  stamp "head costs $slots exit $?"
  grep -E "^layer|^over all" "$out/head_costs_$slots.log"
done
stamp done
