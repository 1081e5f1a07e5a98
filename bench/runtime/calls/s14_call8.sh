#!/usr/bin/env bash
# Session 14, call 8, on one H200: bench_head_costs with the measured split (rows of more than
# CAP blocks in halves over two kernels on two streams, then an LSE merge), every head of four
# Wan2.1-720p layers, CAP 600 and 400.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
for cap in 600 400; do
  timeout 120 "$bin/bench_head_costs" wan2.1-720p 4 0 264 $cap >"$out/head_split_$cap.log" 2>&1
  stamp "head split $cap exit $?"
  grep -E "^over all|^split" "$out/head_split_$cap.log"
done
stamp done
