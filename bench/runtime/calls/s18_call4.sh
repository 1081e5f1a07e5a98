#!/usr/bin/env bash
# Session 18, call 4, on one H200: ring-step kernels split their long rows only where they hold
# one head (SpOptions::split_step_heads = 1, the default now) against up to three heads, every
# strategy at P = 32; the default at P = 16; the NCCL tests at P = 1 (whole layers of five heads
# splitting their rows).
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
cat "$bin/BUILT_AT"
emulate_list 32 all_heads1 all
emulate_list 32 all_heads3 all "--split-step-heads 3"
emulate_list 16 all_heads1 all
nccl_tests_np1
stamp done
