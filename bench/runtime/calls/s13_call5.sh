#!/usr/bin/env bash
# Session 13, call 5, on one H200 (the 2-GPU machine was no longer lent): the NCCL tests at P = 1
# with Communicator::connect; the emulated twin of call 2's real P = 2 runs (Wan2.1-480p, 8 layers
# x 2 steps, whole layers and 3 head chunks), to measure the emulation's error against them; then
# the whole model at P = 16 and 8 priced with call 2's link probe (220.8 GB/s + 91.3 us).
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
nccl_tests_np1
for c in 1 3; do
  timeout 200 "$bin/dbsp" run --emulate 2 --workload wan2.1-480p --backend cuda --strategy all \
    --layers 8 --steps 2 --link-gbps 220.8 --latency-us 91.3 --head-chunks $c \
    >"$out/emulate_2_480p_chunks$c.log" 2>&1
  stamp "emulate 2 480p chunks $c exit $?"
  sed -n '/^summary/,$p' "$out/emulate_2_480p_chunks$c.log"
done
for p in 16 8; do
  timeout 240 "$bin/dbsp" run --emulate $p --workload wan2.1-720p --backend cuda --strategy all \
    --layers 40 --steps 1 --link-gbps 220.8 --latency-us 91.3 --head-chunks 3 --plan-ahead \
    >"$out/emulate_${p}_720p.log" 2>&1
  stamp "emulate $p 720p exit $?"
  sed -n '/^summary/,$p' "$out/emulate_${p}_720p.log"
  awk '$3 == "dbsp" {print $4}' "$out/emulate_${p}_720p.log" | sort | uniq -c | tr '\n' ' '; echo
done
stamp done
