#!/usr/bin/env bash
# Session 13, call 11, on one H200: fine masks emulated at P = 8 (call 10: dbsp 1.468x over ring,
# against 1.209x in session 10), the binary before the huge-page key lists (c08222d) and after
# (ceec0f2), alternating, to see what the host set-up change did to the ratio.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
for round in 1 2; do
  for b in dbsp_before dbsp; do
    timeout 200 "$bin/$b" run --emulate 8 --workload wan2.1-720p --backend cuda --strategy ring,dbsp \
      --fine-keep 0.3 --layers 8 --steps 1 --link-gbps 220.8 --latency-us 91.3 --head-chunks 2 \
      --plan-ahead >"$out/fine_${b}_$round.log" 2>&1
    stamp "$b round $round exit $?"
    sed -n '/^strategy/,/^dbsp /p' "$out/fine_${b}_$round.log"
  done
done
