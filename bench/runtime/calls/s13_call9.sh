#!/usr/bin/env bash
# Session 13, call 9, on one H200: local fine masks in transparent huge pages (b8706c4) against
# c08222d. Real P = 1 runs on Wan2.1-480p fine masks (--fine-keep 0.3, 4 layers x 2 steps: step 0
# builds every layer's schedule into fresh memory, step 1 into the memory of step 0's), setup per
# rank summed; then one checked run.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
cat /sys/kernel/mm/transparent_hugepage/enabled
for round in 1 2; do
  for b in dbsp_before dbsp; do
    timeout 120 $mpirun -np 1 "$bin/$b" run --workload wan2.1-480p --backend cuda --strategy dbsp \
      --fine-keep 0.3 --layers 4 --steps 2 >"$out/fine_${b}_$round.log" 2>&1
    stamp "$b round $round exit $?"
    grep -E "^ +[01] +[0-3] |^summary" "$out/fine_${b}_$round.log"
    grep -A2 "^ rank" "$out/fine_${b}_$round.log" | tail -1
  done
done
timeout 120 $mpirun -np 1 "$bin/dbsp" run --workload wan2.1-480p --backend cuda --strategy dbsp \
  --fine-keep 0.3 --layers 2 --steps 1 --check --check-blocks 2 >"$out/fine_check.log" 2>&1
stamp "check exit $?: $(grep -E '^check:' "$out/fine_check.log")"
