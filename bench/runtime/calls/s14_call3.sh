#!/usr/bin/env bash
# Session 14, call 3, on one H200: one head's kernel alone against the cost model's prediction,
# every head of four Wan2.1-720p layers (bench_head_costs).
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
timeout 200 "$bin/bench_head_costs" wan2.1-720p 4 0 >"$out/head_costs.log" 2>&1
stamp "head costs exit $?"
grep "^layer" "$out/head_costs.log"
stamp done
