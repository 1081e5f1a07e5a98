#!/usr/bin/env bash
# Session 13, call 1, on the 2 x H200 machine (first two-GPU call since session 4): the NCCL tests
# at P = 1 and 2, the link probe, checked P = 2 runs of every strategy and path that had only run
# on one GPU (head chunks on two streams, shared heads, the in-place ring, plan-ahead, the device
# estimator, fine masks), then Wan2.1-480p timings of every strategy at P = 2.
set -uo pipefail
source bench/runtime/calls/call_env.sh
export TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1

for np in 1 2; do
  stamp "nccl tests np$np"
  timeout 240 $mpirun -np $np "$bin/dbsp_nccl_tests" --gtest_brief=1 >"$out/nccl_tests_np$np.log" 2>&1
  echo "np$np exit $?"
  grep -E "PASSED|FAILED|SKIPPED|Failure" "$out/nccl_tests_np$np.log" | sort | uniq -c | head -30
done

stamp "link probe"
for round in 1 2; do
  timeout 60 $mpirun -np 2 "$bin/bench_link_probe" 256 >"$out/link_probe_$round.log" 2>&1
  tail -8 "$out/link_probe_$round.log"
done
gbps=$(awk '/^link:/ {print $2}' "$out/link_probe_2.log"); gbps=${gbps:-193.9}
lat=$(awk '/^link:/ {print $4}' "$out/link_probe_2.log"); lat=${lat:-68.1}

# check NAME FLAGS...: a checked P = 2 run, 2 layers x 1 step, the first 2 query blocks of each shard.
check() {
  local name=$1; shift
  timeout 150 $mpirun -np 2 "$bin/dbsp" run --workload wan2.1-480p --backend cuda --layers 2 \
    --steps 1 --check --check-blocks 2 "$@" >"$out/check_$name.log" 2>&1
  echo "check $name exit $?: $(grep -E '^check:|error' "$out/check_$name.log" | sort | uniq -c | tr '\n' ' ' | cut -c1-300)"
}
stamp "checked runs at P = 2"
for s in ulysses ring dbsp-paper dbsp dbsp-shared usp:2x1 dbsp:1x2; do check "$s" --strategy "$s"; done
check dbsp_chunks3 --strategy dbsp --head-chunks 3
check dbsp-shared_chunks3 --strategy dbsp-shared --head-chunks 3
check ulysses_chunks3 --strategy ulysses --head-chunks 3
check dbsp_ahead --strategy dbsp --plan-ahead --head-chunks 3
check dbsp_estimate --strategy dbsp --estimate
check ring_estimate --strategy ring --estimate
check dbsp_fine --strategy dbsp --fine-keep 0.3
check ring_fine --strategy ring --fine-keep 0.3
check dbsp_fine_chunks2 --strategy dbsp --fine-keep 0.3 --head-chunks 2 --plan-ahead

# time NAME FLAGS...: 8 layers x 2 steps at P = 2, the summary and rank lines.
time_run() {
  local name=$1; shift
  timeout 150 $mpirun -np 2 "$bin/${DBSP:-dbsp}" run --workload wan2.1-480p --backend cuda \
    --layers 8 --steps 2 --link-gbps "$gbps" --latency-us "$lat" "$@" >"$out/time_$name.log" 2>&1
  echo "== $name exit $?"
  sed -n '/^summary/,$p' "$out/time_$name.log" | head -12
}
stamp "timed runs at P = 2 (link $gbps GB/s + $lat us)"
for s in ulysses ring dbsp-paper dbsp dbsp-shared; do time_run "$s" --strategy "$s"; done
for c in 2 3; do
  for s in ulysses dbsp dbsp-shared; do time_run "${s}_chunks$c" --strategy "$s" --head-chunks "$c"; done
done
time_run dbsp_chunks3_ahead --strategy dbsp --head-chunks 3 --plan-ahead
DBSP=dbsp_before time_run dbsp_before_chunks3_ahead --strategy dbsp --head-chunks 3 --plan-ahead
stamp done
