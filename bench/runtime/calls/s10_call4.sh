#!/usr/bin/env bash
# Session 10, call 4: call 3 again with the table's rates measured outside the setup clock (in
# call 3 their first use was charged to ulysses' first layer). The whole model at P = 16 and 8,
# and fine masks (720p, 8 layers, --fine-keep 0.3) at P = 8.
set -uo pipefail
source bench/runtime/calls/call_env.sh
emulate_whole_model 16 3
emulate_whole_model 8 2
emulate_fine 8
stamp done
