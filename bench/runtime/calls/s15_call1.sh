#!/usr/bin/env bash
# Session 15, call 1, on one H200: split long rows (SparseAttention::split_long_rows). The GPU
# kernel tests; bench_head_costs (every head of four Wan2.1-720p layers, unsplit against split in
# the kernel's own work list); the NCCL tests at P = 1; the whole model emulated at P = 16 for
# dbsp alone with --rank-times, with and without --no-split-rows.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
timeout 200 "$bin/dbsp_gpu_tests" --gtest_brief=1 >"$out/gpu_tests.log" 2>&1
stamp "gpu tests exit $?"
grep -E "PASSED|FAILED|SKIPPED|Failure" "$out/gpu_tests.log" | sort | uniq -c | head -30
timeout 150 "$bin/bench_head_costs" wan2.1-720p 4 0 264 >"$out/head_split.log" 2>&1
stamp "head split exit $?"
grep -E "^over all|^split" "$out/head_split.log"
nccl_tests 1
for flags in "" "--no-split-rows"; do
  emulate_ranks 16 dbsp "$flags"
done
stamp done
