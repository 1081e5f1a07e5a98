#!/usr/bin/env bash
# Session 11, call 5: what one more head chunk costs the kernels. Static ulysses (even groups) at
# P = 8 and 16, 8 layers, with 1 to 5 chunks: the mean rank compute per chunk count (the sum of
# a rank's chunk kernels, each timed alone, +7% beside a transfer when C > 1).
set -uo pipefail
source bench/runtime/calls/call_env.sh
for P in 8 16; do
  for c in 1 2 3 4 5; do
    log="$out/chunk_cost_${P}_$c.log"
    "$bin/dbsp" run --emulate "$P" --workload wan2.1-720p --backend cuda --strategy ulysses \
      --layers 8 --steps 1 --link-gbps 193.9 --latency-us 68.1 --head-chunks "$c" >"$log" 2>&1
    awk -v P="$P" -v c="$c" '$1 == "ulysses" {print "P", P, "chunks", c, "compute_avg", $3, "total", $2}' "$log"
  done
done
stamp done
