#!/usr/bin/env bash
# Session 11, call 3: groups hold their heads in the pipeline order (heaviest first, second
# heaviest last). The whole model at P = 8 with 2, 3 and 4 head chunks, the commit before at
# P = 8, C = 3 in the same call, P = 16 (C = 3) and P = 4 (C = 4); the NCCL tests at P = 1.
set -uo pipefail
source bench/runtime/calls/call_env.sh
nccl_tests_np1
for c in 3 4 2; do emulate_whole_model 8 "$c"; done
DBSP=dbsp_before emulate_whole_model 8 3
emulate_whole_model 16 3
emulate_whole_model 4 4
stamp done
