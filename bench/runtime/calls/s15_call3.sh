#!/usr/bin/env bash
# Session 15, call 3, on one H200: shared heads (dbsp-shared: a heavy head's rows over two ranks)
# with and without split long rows, beside dbsp, emulated at P = 16 (whole model, --rank-times).
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
for strategy in dbsp-shared dbsp; do
  for flags in "" "--no-split-rows"; do
    emulate_ranks 16 $strategy "$flags"
  done
done
stamp done
