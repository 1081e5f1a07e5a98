#!/usr/bin/env bash
# Session 10, call 4: call 3 again with the table's rates measured outside the setup clock (in
# call 3 their first use was charged to ulysses' first layer). The whole model at P = 16 and 8,
# and fine masks (720p, 8 layers, --fine-keep 0.3) at P = 8.
set -uo pipefail
source bench/runtime/calls/call_env.sh
emulate_whole_model 16 3
emulate_whole_model 8 2
log="$out/emulate_fine_8.log"
timeout 200 "$bin/dbsp" run --emulate 8 --workload wan2.1-720p --backend cuda --strategy all \
  --fine-keep 0.3 --layers 8 --steps 1 --link-gbps 193.9 --latency-us 68.1 --head-chunks 2 \
  --plan-ahead >"$log" 2>&1
stamp "emulate fine 8 exit $?"
sed -n '/^summary/,$p' "$log"
awk '$3 == "dbsp" || $3 == "ring" {print $2, $3, $11, $12, $13, $14}' "$log" | tr '\n' '|'
echo "(layer strategy setup a2a ring total)"
stamp done
