#!/usr/bin/env bash
# Session 18, call 5, on one H200, at 18df7bb (ring-step kernels of up to three heads split their
# long rows): the acceptance figures (every strategy at P = 16, 8 and 4), every strategy at P = 32,
# and two denoising steps at P = 32 (dbsp, dbsp-paper and the best static grid).
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
cat "$bin/BUILT_AT"
for P in 16 8 4; do emulate_default $P; done
emulate_list 32 all all
STEPS=2 emulate_list 32 steps2 dbsp,dbsp-paper,usp:8x4
stamp done
