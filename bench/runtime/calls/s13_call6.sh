#!/usr/bin/env bash
# Session 13, call 6, on one H200: do the emulator's kernels run faster on its zero placeholders
# than on real data? Call 5's twin of the real P = 2 runs put Ulysses' and dbsp's compute 8% below
# the real ranks'. The twin (whole layers) with 70e5cdc (zero inputs) and with random bf16 inputs,
# twice each, alternating; then the NCCL tests at P = 1 (connect, head chunks by default).
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
for round in 1 2; do
  for b in dbsp_before dbsp; do
    timeout 120 "$bin/$b" run --emulate 2 --workload wan2.1-480p --backend cuda \
      --strategy ulysses,ring,dbsp --layers 8 --steps 2 --link-gbps 220.8 --latency-us 91.3 \
      --head-chunks 1 >"$out/twin_${b}_$round.log" 2>&1
    stamp "$b round $round exit $?"
    sed -n '/^summary/,/^dbsp /p' "$out/twin_${b}_$round.log"
  done
done
nccl_tests_np1
stamp done
