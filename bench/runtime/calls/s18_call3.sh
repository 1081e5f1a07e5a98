#!/usr/bin/env bash
# Session 18, call 3, on one H200: every strategy at P = 16 and 8 with and without ring-step
# kernels splitting their long rows (--split-step-rows, rows of 128 key blocks and more, only in
# steps of that many key blocks), then every strategy at P = 32 with them.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
cat "$bin/BUILT_AT"
for P in 16 8; do
  emulate_list $P all all
  emulate_list $P all_split128 all --split-step-rows
done
emulate_list 32 all_split128_steps all --split-step-rows
stamp done
