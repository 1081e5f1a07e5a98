#!/usr/bin/env bash
# Session 14, call 1, on one GPU: the first run on a GPU of the device NaN/Inf scan
# (SpOptions::check_finite, 4d813d4) through the GPU and NCCL tests at P = 1; its cost on real
# P = 1 Wan2.1-480p calls (with and without --no-finite-check); and where a fine layer's first
# schedule spends its time (dbsp_trace: this binary with timers around the host build, the device
# and pinned allocations; not committed).
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
which mpirun || echo "no mpirun"
timeout 200 "$bin/dbsp_gpu_tests" --gtest_brief=1 >"$out/gpu_tests.log" 2>&1
stamp "gpu tests exit $?"
grep -E "PASSED|FAILED|SKIPPED" "$out/gpu_tests.log" | sort | uniq -c | head -20
nccl_tests 1
for round in 1 2; do
  for flag in "" --no-finite-check; do
    log="$out/block_${round}${flag:+_nocheck}.log"
    timeout 100 $mpirun -np 1 "$bin/dbsp" run --workload wan2.1-480p --backend cuda \
      --strategy dbsp --layers 8 --steps 2 $flag >"$log" 2>&1
    stamp "block round $round '$flag' exit $?"
    grep -A3 "^summary" "$log" | head -4
    grep -A2 "^ rank" "$log" | tail -1
  done
done
timeout 120 $mpirun -np 1 "$bin/dbsp_trace" run --workload wan2.1-480p --backend cuda \
  --strategy dbsp --fine-keep 0.3 --layers 4 --steps 2 >"$out/fine_trace.log" 2>&1
stamp "fine trace exit $?"
grep -E "^trace|^ +[01] +[0-3] " "$out/fine_trace.log" | head -60
stamp done
