#!/usr/bin/env bash
# Session 11, call 7: call 6's P = 16 runs met host hiccups (one virtual rank's schedule build
# took 9-11 ms in two layers, exposed beside 6 ms layers), so P = 16 with 4 chunks again, twice,
# and fine masks at P = 8 on the two-stream chunks.
set -uo pipefail
source bench/runtime/calls/call_env.sh
emulate_whole_model 16 4
mv "$out/emulate_16_chunks4.log" "$out/emulate_16_chunks4_first.log"
emulate_whole_model 16 4
emulate_fine 8
stamp done
