#!/usr/bin/env bash
# Session 17, call 2, on one H200: three planners, dbsp alone at P = 16 and 32, two alternating
# rounds. dbsp_before (4983523) plans every grid side by side; dbsp_two_round (9a587a0) plans the
# grid with the lowest cost floor alone, then the others that may still win; dbsp starts every
# grid in floor order as threads free up and skips those whose floor exceeds the best so far.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
cat "$bin/BUILT_AT"
for round in 1 2; do
  for P in 16 32; do
    for binary in dbsp_before dbsp_two_round dbsp; do
      DBSP=$binary emulate_list $P ${binary}_$round dbsp | grep -E "^dbsp "
    done
  done
done
stamp done
