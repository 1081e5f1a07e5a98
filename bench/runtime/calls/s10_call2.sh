#!/usr/bin/env bash
# Session 10, call 2: with three chunks or more, one head at each end of every group (the middle
# chunks share the rest), against ebf023f's 1 : 2 : 1 shares (dbsp_before). Whole model emulated
# at P = 8 and 16.
set -uo pipefail
source bench/runtime/calls/call_env.sh
DBSP=dbsp_before emulate_whole_model 8 3
emulate_whole_model 8 3
DBSP=dbsp_before emulate_whole_model 16 3
emulate_whole_model 16 3
emulate_whole_model 16 4
stamp done
