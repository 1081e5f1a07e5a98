#!/usr/bin/env bash
# Session 14, call 2, on one H200: the NaN/Inf scan with 16-byte loads and its test on V (the
# NCCL tests at P = 1, with the scan's own test); its cost on P = 1 Wan2.1-480p calls; fine
# layers' key lists through the staged upload (dbsp) against one pinned table (dbsp_before), real
# P = 1 calls and emulated P = 8.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
nccl_tests 1
grep -B3 -A12 "Failure" "$out/nccl_tests.log" | head -40
for round in 1 2; do
  for flag in "" --no-finite-check; do
    log="$out/block_${round}${flag:+_nocheck}.log"
    timeout 100 $mpirun -np 1 "$bin/dbsp" run --workload wan2.1-480p --backend cuda \
      --strategy dbsp --layers 8 --steps 2 $flag >"$log" 2>&1
    stamp "block round $round '$flag' exit $?: $(grep '^summary' "$log")"
  done
done
for round in 1 2; do
  for b in dbsp_before dbsp; do
    log="$out/fine_${b}_$round.log"
    timeout 120 $mpirun -np 1 "$bin/$b" run --workload wan2.1-480p --backend cuda --strategy dbsp \
      --fine-keep 0.3 --layers 4 --steps 2 >"$log" 2>&1
    stamp "$b round $round exit $?"
    grep -E "^ +[01] +[0-3] |^summary" "$log"
  done
done
timeout 120 $mpirun -np 1 "$bin/dbsp" run --workload wan2.1-480p --backend cuda --strategy dbsp \
  --fine-keep 0.3 --layers 2 --steps 1 --check --check-blocks 2 >"$out/fine_check.log" 2>&1
stamp "fine check exit $?: $(grep -E '^check:' "$out/fine_check.log")"
for b in dbsp_before dbsp; do
  DBSP=$b emulate_fine 8
done
stamp done
