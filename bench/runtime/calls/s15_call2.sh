#!/usr/bin/env bash
# Session 15, call 2, on one H200: split long rows in a rank's last chunk kernel only (the policy
# kept). The NCCL tests at P = 1; dbsp alone emulated at P = 16 with --rank-times, with and
# without --no-split-rows; then the whole model with every strategy at P = 16 and P = 8.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
nccl_tests 1
for flags in "" "--no-split-rows"; do
  emulate_ranks 16 dbsp "$flags"
done
emulate_default 16
emulate_default 8
stamp done
