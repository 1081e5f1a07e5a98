#!/usr/bin/env bash
# Session 15, call 4, on one H200, after the review refactor (the consumer's two stores share one
# row loop; the tests' Hopper check is one function): the GPU tests, one layer of
# bench_head_costs, the NCCL tests at P = 1, and dbsp alone emulated at P = 16.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
timeout 200 "$bin/dbsp_gpu_tests" --gtest_brief=1 >"$out/gpu_tests.log" 2>&1
stamp "gpu tests exit $?"
grep -E "PASSED|FAILED|SKIPPED|Failure" "$out/gpu_tests.log" | sort | uniq -c | head -30
timeout 100 "$bin/bench_head_costs" wan2.1-720p 1 0 264 >"$out/head_split.log" 2>&1
stamp "head split exit $?"
grep -E "^over all|^split" "$out/head_split.log"
nccl_tests 1
emulate_ranks 16 dbsp
stamp done
