#!/usr/bin/env bash
# Session 18, call 1, on one H200: where dbsp's measured rho_s departs from the predicted one at
# P = 32 (U16R2: each rank step's kernel time against its kept blocks and rows, --rank-times), and
# whether ring-step kernels splitting their long rows (--split-step-rows) pays: every strategy at
# P = 32 and 16, with and without.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
cat "$bin/BUILT_AT"
emulate_list 32 ranks dbsp,dbsp-paper,usp:16x2,usp:8x4 --rank-times
emulate_list 32 all all
emulate_list 32 all_split all --split-step-rows
emulate_list 16 all all
emulate_list 16 all_split all --split-step-rows
stamp done
