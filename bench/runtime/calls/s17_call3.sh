#!/usr/bin/env bash
# Session 17, call 3, on one H200, at ff16963's binaries: two denoising steps (plans kept by the
# P_s rule after the first) with every strategy at P = 16, and with dbsp, dbsp-paper and the
# best static grids at P = 32, where one step left dbsp's planning exposed; then the NCCL tests
# at P = 1.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
cat "$bin/BUILT_AT"
STEPS=2 emulate_list 16 all_steps2 all
STEPS=2 emulate_list 32 steps2 usp:16x2,usp:8x4,usp:4x8,dbsp-paper,dbsp
nccl_tests 1
stamp done
