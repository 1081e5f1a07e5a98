#!/usr/bin/env bash
# Session 16, call 5, on one H200, at 1e3bb1b's binaries with OMP_WAIT_POLICY=passive (now in
# device_env.sh): the whole model with every strategy at P = 16, 8 and 4 (the acceptance
# figures), then dbsp alone at P = 16 with --rank-times.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
echo "OMP_WAIT_POLICY=$OMP_WAIT_POLICY"
for P in 16 8 4; do emulate_default $P; done
emulate_list 16 dbsp_ranks dbsp --rank-times
stamp done
