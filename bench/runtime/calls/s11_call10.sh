#!/usr/bin/env bash
# Session 11, call 10: P = 16 again on the final device code (calls 6-8 met a noisy host):
# 4 chunks twice and 3 chunks once.
set -uo pipefail
source bench/runtime/calls/call_env.sh
emulate_whole_model 16 4
mv "$out/emulate_16_chunks4.log" "$out/emulate_16_chunks4_first.log"
emulate_whole_model 16 4
emulate_whole_model 16 3
stamp done
