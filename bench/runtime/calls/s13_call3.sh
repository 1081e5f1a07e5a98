#!/usr/bin/env bash
# Session 13, call 3, on the 2 x H200 machine: the checked P = 2 runs of call 1 whose logs did not
# come back (ring, in place; static grids; ring with the device estimator and fine masks; fine
# masks pipelined by head chunks with plan-ahead), each stamped and bounded.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
export TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
check() {
  local name=$1; shift
  timeout 90 $mpirun -np 2 "$bin/dbsp" run --workload wan2.1-480p --backend cuda --layers 2 \
    --steps 1 --check --check-blocks 2 --timeout 20 "$@" >"$out/check_$name.log" 2>&1
  stamp "check $name exit $?: $(grep -E '^check:|error|^summary' "$out/check_$name.log" | sort | uniq -c | tr '\n' ' ' | cut -c1-400)"
}
check ring --strategy ring
check ulysses --strategy ulysses
check usp2x1 --strategy usp:2x1
check dbsp1x2 --strategy dbsp:1x2
check ulysses_chunks3 --strategy ulysses --head-chunks 3
check ring_estimate --strategy ring --estimate
check ring_fine --strategy ring --fine-keep 0.3
check dbsp_fine_chunks2 --strategy dbsp --fine-keep 0.3 --head-chunks 2 --plan-ahead
check dbsp-shared_send_all --strategy dbsp-shared --send-all --head-chunks 2
stamp done
