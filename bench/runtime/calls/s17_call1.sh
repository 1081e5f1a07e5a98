#!/usr/bin/env bash
# Session 17, call 1, on one H200: the planner that skips grids which cannot win (fastest_plan,
# 9a587a0) against session 16's binary (dbsp_before), dbsp alone at P = 16, alternating; then the
# acceptance figures (every strategy at P = 16, 8 and 4) and every strategy at P = 32.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
cat "$bin/BUILT_AT"
for round in 1 2; do
  DBSP=dbsp_before emulate_list 16 dbsp_before_$round dbsp
  emulate_list 16 dbsp_$round dbsp
done
for P in 16 8 4; do emulate_default $P; done
emulate_list 32 all all
stamp done
