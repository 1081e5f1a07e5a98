#!/usr/bin/env bash
# Session 15, call 5, on one H200, after the second review mend (the ring merge and the split
# rows' merge share one LSE-weight function): the GPU tests, one layer of bench_head_costs and
# the NCCL tests at P = 1.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
gpu_tests
head_costs 1
nccl_tests 1
stamp done
