#!/usr/bin/env bash
# Session 9, call 2: the whole model emulated at P = 4, 8 and 16 with staging copies charged at
# the timed copy_rows cost (fixed + per row), and P = 8 once more with copies free
# (--copy-gbps 1e6), to show their share. It ran with the binary of 00fde6d plus the two-size
# copy timing, where --copy-gbps priced the emulator only (now the planner takes it too).
set -uo pipefail
source bench/runtime/calls/call_env.sh
emulate_whole_model 8 2
emulate_whole_model 8 2 "--copy-gbps 1000000"
emulate_whole_model 16 3
emulate_whole_model 4 2
stamp done
