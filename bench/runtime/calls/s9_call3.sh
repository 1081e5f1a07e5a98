#!/usr/bin/env bash
# Session 9, call 3: NCCL tests at P = 1 (with the copy_rows test), then the whole model emulated
# at P = 8, 16 and 4 with copy_rows issuing four rows' loads per thread (its timed rate is
# printed) and the cost model charging staging copies.
set -uo pipefail
source bench/runtime/calls/call_env.sh
nccl_tests_np1
emulate_whole_model 8 2
emulate_whole_model 16 3
emulate_whole_model 4 2
stamp done
