#!/usr/bin/env bash
# Session 17, call 5, on one H200: head sets built side by side (dbsp) against fc8af56
# (dbsp_before), dbsp alone at P = 32 and 16, two alternating rounds; then every strategy at
# P = 16 with the session's last binary.
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
emulate_default 16
stamp done
