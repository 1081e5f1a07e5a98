#!/usr/bin/env bash
# Session 15, call 4, on one H200, after the review refactor (the consumer's two stores share one
# row loop; the tests' Hopper check is one function): the GPU tests, one layer of
# bench_head_costs, the NCCL tests at P = 1, and dbsp alone emulated at P = 16.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
gpu_tests
head_costs 1
nccl_tests 1
emulate_ranks 16 dbsp
stamp done
