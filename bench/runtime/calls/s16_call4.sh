#!/usr/bin/env bash
# Session 16, call 4, on one H200: two-head groups lighter head first (pipeline_head_order).
# dbsp alone at P = 16 with --rank-times, as is and with OpenMP's idle threads asleep at once
# (OMP_WAIT_POLICY=passive); the NCCL tests at P = 1 (head chunks, every order); then the whole
# model with every strategy at P = 16, 8 and 4 (the acceptance figures).
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
emulate_list 16 dbsp_ranks dbsp --rank-times
OMP_WAIT_POLICY=passive emulate_list 16 dbsp_ranks_passive dbsp --rank-times
nccl_tests 1
for P in 16 8 4; do emulate_default $P; done
stamp done
