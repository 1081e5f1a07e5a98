#!/usr/bin/env bash
# Session 12, call 1: shared heads (e8ced86) against the session's starting binary (session 11's
# last), the whole model at P = 16. dbsp-whole is ours without shared heads (but with the cost
# model that prices the head-chunk pipeline); dbsp_before is the previous binary's everything.
set -uo pipefail
source bench/runtime/calls/call_env.sh
nccl_tests_np1
STRATEGY=all,dbsp-whole emulate_whole_model 16 3
DBSP=dbsp_before emulate_whole_model 16 3
stamp done
