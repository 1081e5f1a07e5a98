#!/usr/bin/env bash
# Session 15, call 1, on one H200: split long rows (SparseAttention::split_long_rows). The GPU
# kernel tests; bench_head_costs (every head of four Wan2.1-720p layers, unsplit against split in
# the kernel's own work list); the NCCL tests at P = 1; the whole model emulated at P = 16 for
# dbsp alone with --rank-times, with and without --no-split-rows.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
gpu_tests
head_costs 4
nccl_tests 1
for flags in "" "--no-split-rows"; do
  emulate_ranks 16 dbsp "$flags"
done
stamp done
