#!/usr/bin/env bash
# Session 10, call 5: the whole model emulated at P = 4 on the current code, with 2, 3 and 4 head
# chunks (the last P = 4 figures, session 9, used two chunks before the output chunks were
# decoupled and the table's host work charged).
set -uo pipefail
source bench/runtime/calls/call_env.sh
for chunks in 2 3 4; do emulate_whole_model 4 "$chunks"; done
stamp done
