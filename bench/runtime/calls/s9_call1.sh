#!/usr/bin/env bash
# Session 9, call 1: NCCL tests at P = 1 (the device code of 924f32f, 393520f and later), 480p
# fine masks at P = 1 with the session-8 binary (dbsp_before) beside this one (the pinned table
# filled by every core), and the whole model emulated at P = 8 with staging copies charged.
set -uo pipefail
source bench/runtime/device_env.sh
out=${OUT:-/tmp/out}; mkdir -p "$out"
stamp() { echo "[$(date +%T)] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/device.txt"
stamp "nccl tests np1"
timeout 200 $mpirun -np 1 "$bin/dbsp_nccl_tests" --gtest_brief=1 >"$out/nccl_tests.log" 2>&1
echo "np1 exit $?"; grep -E "PASSED|FAILED|SKIPPED|Failure" "$out/nccl_tests.log" | sort | uniq -c | head -30
stamp "fine 480p"
{
  timeout 120 $mpirun -np 1 "$bin/dbsp" run --workload wan2.1-480p --backend cuda --strategy dbsp \
    --fine-keep 0.3 --layers 2 --steps 2 --plan-ahead --check --check-blocks 2 2>&1 |
    grep -E '^(check|planned ahead)' | tr '\n' ' '; echo
  for round in 1 2; do
    for binary in dbsp_before dbsp; do
      for flag in "" "--plan-ahead"; do
        log=$(mktemp)
        timeout 120 $mpirun -np 1 "$bin/$binary" run --workload wan2.1-480p --backend cuda \
          --strategy dbsp --fine-keep 0.3 --layers 8 --steps 2 $flag >"$log" 2>&1
        echo "round $round $binary '$flag' exit $?: $(grep -E '^(forward calls|planned ahead)' "$log" | tr '\n' ' ' | cut -c1-300)"
        grep -A1 "^ rank" "$log" | tail -2
      done
    done
  done
} >"$out/fine_480.log" 2>&1
cat "$out/fine_480.log"
stamp "emulated P = 8, whole model"
log="$out/emulate_8_chunks2_40.log"
timeout 240 "$bin/dbsp" run --emulate 8 --workload wan2.1-720p --backend cuda --strategy all \
  --layers 40 --steps 1 --link-gbps 193.9 --latency-us 68.1 --head-chunks 2 --plan-ahead >"$log" 2>&1
stamp "emulate 8 exit $?"
sed -n '/^summary/,$p' "$log"
stamp done
