#!/usr/bin/env bash
# Session 17, call 6, on one H200, at 7350dbb (the naive bf16 fine path): the NCCL tests at P = 1,
# whose fine tests now apply the whole bf16 rule, then checked runs at P = 1 on Wan2.1-480p masks:
# fine (--fine-keep 0.3) with dbsp and ulysses in three head chunks, and a block run.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
cat "$bin/BUILT_AT"
nccl_tests 1
grep -E "DeviceFine|Fine.*(OK|FAILED)|vs the fp64 fine" "$out/nccl_tests.log" | head -20
checked fine_dbsp --strategy dbsp --fine-keep 0.3
checked fine_ulysses_chunks --strategy ulysses --fine-keep 0.3 --head-chunks 3
checked block_dbsp --strategy dbsp
stamp done
