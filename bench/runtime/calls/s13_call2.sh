#!/usr/bin/env bash
# Session 13, call 2, on the 2 x H200 machine: call 1 ran past the call's limit and its stdout was
# lost (its checked runs came back: all PASS), so the NCCL tests at P = 2, the link probe and the
# P = 2 timings again, each stamped, with logs under $OUT/logs (tarred by the caller).
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
export TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
stamp "nccl tests np2"
timeout 240 $mpirun -np 2 "$bin/dbsp_nccl_tests" --gtest_brief=1 >"$out/nccl_tests_np2.log" 2>&1
echo "np2 exit $?"
grep -E "PASSED|FAILED|SKIPPED|Failure|\[ *OK|timed out" "$out/nccl_tests_np2.log" | sort | uniq -c | head -40
stamp "link probe"
timeout 60 $mpirun -np 2 "$bin/bench_link_probe" 256 >"$out/link_probe.log" 2>&1
tail -8 "$out/link_probe.log"
gbps=$(awk '/^link:/ {print $2}' "$out/link_probe.log"); gbps=${gbps:-193.9}
lat=$(awk '/^link:/ {print $4}' "$out/link_probe.log"); lat=${lat:-68.1}
time_run() {
  local name=$1; shift
  timeout 60 $mpirun -np 2 "$bin/${DBSP:-dbsp}" run --workload wan2.1-480p --backend cuda \
    --layers 8 --steps 2 --link-gbps "$gbps" --latency-us "$lat" --timeout 20 "$@" >"$out/time_$name.log" 2>&1
  stamp "$name exit $?"
  grep -E "^summary|^forward|^ rank|^  *[0-9]" "$out/time_$name.log" | head -8
}
for s in ulysses ring dbsp-paper dbsp dbsp-shared; do time_run "$s" --strategy "$s"; done
for s in ulysses dbsp dbsp-shared; do time_run "${s}_chunks3" --strategy "$s" --head-chunks 3; done
time_run dbsp_chunks3_ahead --strategy dbsp --head-chunks 3 --plan-ahead
stamp done
