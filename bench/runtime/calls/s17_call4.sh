#!/usr/bin/env bash
# Session 17, call 4, on one H200: the planner that defers the grids whose floor is far above the
# lowest (fastest_plan) against session 16's (dbsp_before, every grid side by side), dbsp alone at
# P = 32 and 16, two alternating rounds; then the acceptance figures (every strategy at P = 16, 8
# and 4) and every strategy at P = 32.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
cat "$bin/BUILT_AT"
for round in 1 2; do
  for P in 32 16; do
    for binary in dbsp_before dbsp; do
      DBSP=$binary emulate_list $P ${binary}_$round dbsp | grep -E "^dbsp "
    done
  done
done
for P in 16 8 4; do emulate_default $P; done
emulate_list 32 all all
stamp done
