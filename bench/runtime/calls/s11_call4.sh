#!/usr/bin/env bash
# Session 11, call 4: the pipeline head order again. P = 8 with 3 chunks (call 3's best) repeated
# for its noise, P = 16 with 4 chunks, and fine masks at P = 8 (two head chunks).
set -uo pipefail
source bench/runtime/calls/call_env.sh
emulate_whole_model 8 3
emulate_whole_model 16 4
emulate_fine 8
DBSP=dbsp_before emulate_fine 8
stamp done
