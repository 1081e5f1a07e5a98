#!/usr/bin/env bash
# Session 11, call 6: a rank's head-chunk kernels on two streams (each starts in its
# predecessor's tail), charged by the emulator from the kernels queued back to back. The whole
# model at P = 8 (C = 3) and P = 16 (C = 4) against the commit before in the same call, P = 8
# (C = 2), P = 16 (C = 3) and P = 4 (C = 4); the NCCL tests at P = 1.
set -uo pipefail
source bench/runtime/calls/call_env.sh
nccl_tests_np1
emulate_whole_model 8 3
DBSP=dbsp_before emulate_whole_model 8 3
emulate_whole_model 16 4
DBSP=dbsp_before emulate_whole_model 16 4
emulate_whole_model 8 2
emulate_whole_model 16 3
emulate_whole_model 4 4
stamp done
