#!/usr/bin/env bash
# Session 13, call 4 (prepared; not run: the 2 x H200 machine was no longer lent), on the 2 x H200
# machine: SpAttention now connects the world's ranks and
# each ring's neighbours when it is built (call 3: the first layer call that moved blocks, dbsp
# held to U1R2, spent 194 ms in NCCL's connection set-up), and head chunks default to three.
# The NCCL tests at P = 2, dbsp:1x2 (layer 0's comm against call 3's 194 ms), then the P = 2
# timings of call 2 with the default chunks.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
export TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nccl_tests 2
time_run() {
  local name=$1; shift
  timeout 60 $mpirun -np 2 "$bin/dbsp" run --workload wan2.1-480p --backend cuda --layers 8 \
    --steps 2 --link-gbps 220.8 --latency-us 91.3 --timeout 20 "$@" >"$out/time_$name.log" 2>&1
  stamp "$name exit $?"
  grep -E "^warm-up|^summary|^ +0 +[0-3] " "$out/time_$name.log" | head -6
}
time_run u1r2 --strategy dbsp:1x2
for s in ulysses ring dbsp; do time_run "$s" --strategy "$s"; done
time_run dbsp_ahead --strategy dbsp --plan-ahead
stamp done
