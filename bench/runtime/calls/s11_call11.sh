#!/usr/bin/env bash
# Session 11, call 11: the pipelined path end to end on one GPU: `dbsp run` at P = 1 with 1 and 3
# head chunks (Wan2.1-480p, 2 layers, dbsp), checked against the fp64 reference of the first
# query blocks.
set -uo pipefail
source bench/runtime/calls/call_env.sh
for c in 1 3; do
  stamp "dbsp run 480p, $c head chunks"
  timeout 250 $mpirun -np 1 "$bin/dbsp" run --workload wan2.1-480p --backend cuda --strategy dbsp \
    --layers 2 --steps 2 --head-chunks "$c" --check --check-blocks 2 >"$out/run_480p_chunks$c.log" 2>&1
  echo "exit $?"
  grep -iE "check|error|summary|forward" "$out/run_480p_chunks$c.log" | head -12
done
stamp done
