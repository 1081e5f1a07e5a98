#!/usr/bin/env bash
# Session 18, call 2, on one H200: rows split only from 128 key blocks up
# (cuda::SparseAttention::kMinSplitBlocks). The kernel tests (split rows at a floor of 2 blocks),
# the NCCL tests at P = 1 (whole layers splitting their rows, SpOptions::split_step_rows), and
# every strategy at P = 32 with ring-step kernels splitting their long rows.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
cat "$bin/BUILT_AT"
gpu_tests
nccl_tests_np1
emulate_list 32 all_split128 all --split-step-rows
stamp done
