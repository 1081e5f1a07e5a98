#!/usr/bin/env bash
# Session 18, call 6, on one H200, at e4a946a (fine layers take no split scratch): the NCCL tests
# at P = 1 and checked 480p runs at P = 1 (fine with dbsp, block with dbsp).
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
cat "$bin/BUILT_AT"
nccl_tests 1
checked fine_dbsp --strategy dbsp --fine-keep 0.3
checked block_dbsp --strategy dbsp
stamp done
