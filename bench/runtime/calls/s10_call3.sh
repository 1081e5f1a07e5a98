#!/usr/bin/env bash
# Session 10, call 3: the emulator charges the host's table work (copy lists built and timed, the
# pinned fill charged at a timed rate). NCCL tests at P = 1; the whole model at P = 16 and 8; fine
# masks (720p, 8 layers, --fine-keep 0.3) at P = 8 before (dbsp_before: ebf023f) and after.
set -uo pipefail
source bench/runtime/calls/call_env.sh
nccl_tests_np1
emulate_whole_model 16 3
emulate_whole_model 8 2
DBSP=dbsp_before emulate_fine 8
emulate_fine 8
stamp done
