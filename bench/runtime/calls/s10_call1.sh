#!/usr/bin/env bash
# Session 10, call 1: output chunks decoupled from input chunks (a group's last computed heads
# return in the last output chunk; a group with heads computes from the first chunk on). The NCCL
# tests at P = 1 (the device schedule now takes its copy lists from sp/copy_plan.cpp), then the
# whole model emulated at P = 16 and 8, before (dbsp_before: ae9ec49's emulator) and after.
set -uo pipefail
source bench/runtime/calls/call_env.sh
nccl_tests_np1
DBSP=dbsp_before emulate_whole_model 16 3
emulate_whole_model 16 3
emulate_whole_model 16 4
DBSP=dbsp_before emulate_whole_model 8 2
emulate_whole_model 8 2
emulate_whole_model 8 3
stamp done
