#!/usr/bin/env bash
# Session 12, call 2: shared heads at P = 8 and 4 (dbsp-whole beside dbsp, as in call 1).
set -uo pipefail
source bench/runtime/calls/call_env.sh
STRATEGY=all,dbsp-whole emulate_whole_model 8 3
STRATEGY=all,dbsp-whole emulate_whole_model 4 4
stamp done
