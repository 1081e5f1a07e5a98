#!/usr/bin/env bash
# Session 16, call 1, on one H200: dbsp held to each grid beside its own pick, emulated at P = 16
# and P = 8 (whole model): how much a better grid choice per layer could gain.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
emulate_list 16 grids dbsp,dbsp:16x1,dbsp:8x2,dbsp:4x4,usp:4x4
emulate_list 8 grids dbsp,dbsp:8x1,dbsp:4x2,ring
stamp done
