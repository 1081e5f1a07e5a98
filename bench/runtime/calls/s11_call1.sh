#!/usr/bin/env bash
# Session 11, call 1: the whole model at P = 16 (C = 3) and P = 8 (C = 2) at HEAD, full per-layer
# logs kept (every strategy's compute max/mean, exposed all-to-all and ring per layer) to find
# where dbsp's time goes against the ceiling.
set -uo pipefail
source bench/runtime/calls/call_env.sh
emulate_whole_model 16 3
emulate_whole_model 8 2
stamp done
