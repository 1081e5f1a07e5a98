#!/usr/bin/env bash
# Session 8, call 3: NCCL tests at P = 1 (fine plan ahead on the device), P = 1 real runs with fine
# masks (480p) with and without --plan-ahead, the 720p block run with the CLI's kept output
# buffer, and emulated P = 8 fine masks (720p, 4 layers) with and without --plan-ahead.
set -uo pipefail
source bench/runtime/device_env.sh
out=${OUT:-/tmp/out}; mkdir -p "$out"
stamp() { echo "[$(date +%T)] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/device.txt"
stamp "nccl tests np1"
timeout 200 $mpirun -np 1 "$bin/dbsp_nccl_tests" --gtest_brief=1 >"$out/nccl_tests.log" 2>&1
echo "np1 exit $?"; grep -E "PASSED|FAILED|SKIPPED|Failure" "$out/nccl_tests.log" | sort | uniq -c | head -30
stamp "fine, checked"
timeout 120 $mpirun -np 1 "$bin/dbsp" run --workload wan2.1-480p --backend cuda --strategy dbsp \
  --fine-keep 0.3 --layers 2 --steps 2 --plan-ahead --check --check-blocks 2 >"$out/fine_check.log" 2>&1
echo "fine plan-ahead check exit $?: $(grep -E '^(check|planned ahead)' "$out/fine_check.log" | tr '\n' ' ' | cut -c1-200)"
for flag in "" "--plan-ahead"; do
  log="$out/fine_480${flag:+_ahead}.log"
  timeout 120 $mpirun -np 1 "$bin/dbsp" run --workload wan2.1-480p --backend cuda \
    --strategy dbsp --fine-keep 0.3 --layers 8 --steps 2 $flag >"$log" 2>&1
  echo "fine 480p '$flag' exit $?: $(grep -E '^(summary|forward calls|planned ahead)' "$log" | tr '\n' ' ' | cut -c1-420)"
  grep -A1 "^ rank" "$log" | tail -1
done
log="$out/block_720_ahead.log"
timeout 120 $mpirun -np 1 "$bin/dbsp" run --workload wan2.1-720p --backend cuda \
  --strategy dbsp --layers 8 --steps 2 --plan-ahead >"$log" 2>&1
echo "block 720p plan-ahead exit $?: $(grep -E '^(summary|forward calls|planned ahead)' "$log" | tr '\n' ' ' | cut -c1-420)"
grep -A1 "^ rank" "$log" | tail -1
stamp "emulated fine P = 8"
for flag in "" "--plan-ahead"; do
  log="$out/emulate_fine_8${flag:+_ahead}.log"
  timeout 150 "$bin/dbsp" run --emulate 8 --workload wan2.1-720p --backend cuda \
    --strategy all --fine-keep 0.3 --layers 4 --steps 1 --link-gbps 193.9 --latency-us 68.1 \
    --head-chunks 2 $flag >"$log" 2>&1
  stamp "emulate fine 8 '$flag' exit $?"
  sed -n '/^summary/,$p' "$log"
done
stamp done
