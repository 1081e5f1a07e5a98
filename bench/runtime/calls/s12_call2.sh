#!/usr/bin/env bash
# Session 12, call 2: shared heads with the cost model of before (call 1's chunk-aware all-to-all
# price made ours pick U16R1 everywhere, a loss), dbsp beside dbsp-whole at P = 16 and 8.
set -uo pipefail
source bench/runtime/calls/call_env.sh
STRATEGY=all,dbsp-whole emulate_whole_model 16 3
STRATEGY=all,dbsp-whole emulate_whole_model 8 3
stamp done
