#!/usr/bin/env bash
# Session 8, call 2: NCCL tests at P = 1 (estimator workspace), P = 1 720p real runs before
# (9f5342b) and after (short device polls; estimator workspace) with --plan-ahead and with
# --estimate, then whole-model emulations (40 layers) at P = 8 and 16 with --plan-ahead.
set -uo pipefail
source bench/runtime/device_env.sh
out=${OUT:-/tmp/out}; mkdir -p "$out"
stamp() { echo "[$(date +%T)] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/device.txt"
stamp "nccl tests np1"
timeout 200 $mpirun -np 1 "$bin/dbsp_nccl_tests" --gtest_brief=1 >"$out/nccl_tests.log" 2>&1
echo "np1 exit $?"; grep -E "PASSED|FAILED|SKIPPED|Failure" "$out/nccl_tests.log" | sort | uniq -c | head -30
for b in dbsp_before dbsp; do
  log="$out/real_$b.log"
  timeout 120 $mpirun -np 1 "$bin/$b" run --workload wan2.1-720p --backend cuda \
    --strategy dbsp --layers 8 --steps 2 --plan-ahead >"$log" 2>&1
  echo "$b plan-ahead exit $?: $(grep -E '^(summary|forward calls)' "$log" | tr '\n' ' ' | cut -c1-330)"
  grep -A1 "^ rank" "$log" | tail -1
  timeout 120 $mpirun -np 1 "$bin/$b" run --workload wan2.1-720p --backend cuda \
    --strategy dbsp --layers 8 --steps 2 --estimate >>"$log" 2>&1
  echo "$b estimate exit $?: $(grep -E '^(mask estimation|forward calls)' "$log" | tail -2 | tr '\n' ' ' | cut -c1-330)"
  grep -A1 "^ rank" "$log" | tail -1
done
stamp "emulations, 40 layers, plan ahead"
for pc in "8 2" "16 3"; do
  set -- $pc
  log="$out/emulate_$1_chunks$2_40.log"
  timeout 220 "$bin/dbsp" run --emulate "$1" --workload wan2.1-720p --backend cuda \
    --strategy all --layers 40 --steps 1 --link-gbps 193.9 --latency-us 68.1 \
    --head-chunks "$2" --plan-ahead >"$log" 2>&1
  stamp "emulate $1 chunks $2 exit $?"
  sed -n '/^summary/,$p' "$log"
done
stamp done
