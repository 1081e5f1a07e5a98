#!/usr/bin/env bash
# Session 8, call 1: NCCL tests at P = 1 (in-place local tensors, poisoned outputs), then real
# P = 1 720p runs before (session 7 binary) and after, with and without --plan-ahead.
set -uo pipefail
source bench/runtime/device_env.sh
out=${OUT:-/tmp/out}; mkdir -p "$out"
stamp() { echo "[$(date +%T)] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/device.txt"
stamp "nccl tests np1"
timeout 200 $mpirun -np 1 "$bin/dbsp_nccl_tests" --gtest_brief=1 >"$out/nccl_tests.log" 2>&1
echo "np1 exit $?"; grep -E "PASSED|FAILED|SKIPPED|Failure" "$out/nccl_tests.log" | sort | uniq -c | head -30
stamp "checked P=1 run 480p"
timeout 120 $mpirun -np 1 "$bin/dbsp" run --workload wan2.1-480p --backend cuda --strategy dbsp \
  --layers 2 --steps 1 --check --check-blocks 2 >"$out/check.log" 2>&1
echo "check exit $?: $(grep -E '^check' "$out/check.log" | tr '\n' ' ')"
for round in 1 2; do
for b in dbsp_before dbsp; do
  for flag in "" "--plan-ahead"; do
    log="$out/real_${b}${flag:+_ahead}.log"
    timeout 150 $mpirun -np 1 "$bin/$b" run --workload wan2.1-720p --backend cuda \
      --strategy dbsp --layers 8 --steps 2 $flag >>"$log" 2>&1
    echo "round $round $b '$flag' exit $?: $(grep -E '^(summary|forward calls)' "$log" | tail -2 | tr '\n' ' ' | cut -c1-400)"
    grep -A2 "^ rank" "$log" | tail -2
  done
done
done
stamp done
