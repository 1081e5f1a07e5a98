#!/usr/bin/env bash
# One call on a lent one-GPU machine (device tool, from the repository root), for sessions when no
# 2-GPU machine is lent: the kernel GPU tests, the NCCL tests at P = 1 (device estimator and fine
# masks included), `dbsp run --backend cuda` at P = 1 checked with estimated and with fine masks,
# and `dbsp run --emulate P` on Wan2.1-720p (every strategy, ceiling line) priced with the link
# recorded in BENCHMARKS.md (193.9 GB/s + 68.1 us, 2 x H200) unless LINK_GBPS / LATENCY_US say
# otherwise. Same carried binaries and environment as device_run.sh; logs go to $OUT.
# CHUNKS lists the --head-chunks values to emulate (pipelined all-to-alls of grids without a ring);
# SKIP_TESTS=1 leaves out the tests and checked runs; EMULATE_FLAGS are added to every emulation
# (e.g. "--plan-ahead"); PLAN_AHEAD_REAL=1 adds P = 1 real runs at 720p with and without
# --plan-ahead (the "forward calls" line: host work included), and the same at 480p with fine
# masks (--fine-keep 0.3).
#   usage: [EMULATED="8 16 4"] [CHUNKS="1"] [FINE_EMULATED="8" (empty: none)] [SKIP_TESTS=1]
#          [EMULATE_FLAGS=...] [PLAN_AHEAD_REAL=1] bash bench/runtime/one_gpu_run.sh [layers]
set -uo pipefail
# shellcheck source=bench/runtime/device_env.sh
source "$(dirname "$0")/device_env.sh"
out=${OUT:-/tmp/dbsp_one_gpu_out}
mkdir -p "$out"
layers=${1:-8}
gbps=${LINK_GBPS:-193.9}
lat=${LATENCY_US:-68.1}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,temperature.gpu --format=csv \
  | tee "$out/device.txt"

stamp() { echo "[$(date +%T)] $*"; }
if [ -z "${SKIP_TESTS:-}" ]; then
stamp "== kernel gpu tests"
timeout 240 "$bin/dbsp_gpu_tests" --gtest_brief=1 >"$out/gpu_tests.log" 2>&1
echo "gpu tests exit $?"
grep -E "PASSED|FAILED|SKIPPED" "$out/gpu_tests.log" | sort | uniq -c | head -20

stamp "== nccl tests, P = 1"
timeout 200 $mpirun -np 1 "$bin/dbsp_nccl_tests" --gtest_brief=1 >"$out/nccl_tests.log" 2>&1
echo "np1 exit $?"
grep -E "PASSED|FAILED|SKIPPED|Failure" "$out/nccl_tests.log" | sort | uniq -c | head -30

stamp "== dbsp run --backend cuda, P = 1, checked: estimated masks, fine masks"
timeout 150 $mpirun -np 1 "$bin/dbsp" run --workload wan2.1-480p --backend cuda --strategy dbsp \
  --estimate --layers 2 --steps 1 --check --check-blocks 2 >"$out/runs.log" 2>&1
echo "estimate check exit $?: $(grep -E '^(check:|estimated masks|mask estimation)' "$out/runs.log" | tr '\n' ' ')"
timeout 150 $mpirun -np 1 "$bin/dbsp" run --workload wan2.1-480p --backend cuda --strategy dbsp \
  --fine-keep 0.3 --layers 2 --steps 1 --check --check-blocks 2 >>"$out/runs.log" 2>&1
echo "fine check exit $?: $(grep -E '^check:' "$out/runs.log" | tail -1)"
fi

if [ -n "${PLAN_AHEAD_REAL:-}" ]; then
  stamp "== dbsp run --backend cuda, P = 1, Wan2.1-720p, $layers layers x 2 steps: plan ahead or not"
  for flag in "" "--plan-ahead"; do
    timeout 200 $mpirun -np 1 "$bin/dbsp" run --workload wan2.1-720p --backend cuda \
      --strategy dbsp --layers "$layers" --steps 2 $flag >>"$out/runs.log" 2>&1
    echo "plan ahead '$flag' exit $?: $(grep -E '^(summary|forward calls)' "$out/runs.log" | tail -2 | tr '\n' ' ')"
  done
  for flag in "" "--plan-ahead"; do
    timeout 200 $mpirun -np 1 "$bin/dbsp" run --workload wan2.1-480p --backend cuda \
      --strategy dbsp --fine-keep 0.3 --layers "$layers" --steps 2 $flag >>"$out/runs.log" 2>&1
    echo "fine 480p, plan ahead '$flag' exit $?: $(grep -E '^forward calls' "$out/runs.log" | tail -1)"
  done
fi

stamp "== emulated, Wan2.1-720p, $layers layers, link $gbps GB/s + $lat us"
for P in ${EMULATED:-8 16 4}; do
  for chunks in ${CHUNKS:-1}; do
    log="$out/emulate_${P}_chunks$chunks.log"
    timeout 240 "$bin/dbsp" run --emulate "$P" --workload wan2.1-720p --backend cuda \
      --strategy all --layers "$layers" --steps 1 --link-gbps "$gbps" --latency-us "$lat" \
      --head-chunks "$chunks" ${EMULATE_FLAGS:-} >"$log" 2>&1
    stamp "-- emulate $P, $chunks head chunks, exit $?"
    sed -n '/^summary/,$p' "$log"
  done
done
for P in ${FINE_EMULATED-8}; do
  timeout 200 "$bin/dbsp" run --emulate "$P" --workload wan2.1-720p --backend cuda \
    --strategy all --fine-keep 0.3 --layers 2 --steps 1 --link-gbps "$gbps" --latency-us "$lat" \
    >"$out/emulate_fine_$P.log" 2>&1
  stamp "-- emulate fine 0.3, P = $P exit $?"
  sed -n '/^summary/,$p' "$out/emulate_fine_$P.log"
done
