#!/usr/bin/env bash
# Session 9, call 4: the emulator also charges the schedule table's upload (timed pinned copies);
# the cost model's staging default is 1100 GB/s. The whole model emulated at P = 8 and 16, and
# fine masks (720p, 8 layers, --fine-keep 0.3) at P = 8, whose key lists make most of the upload.
set -uo pipefail
source bench/runtime/calls/call_env.sh
emulate_whole_model 8 2
emulate_whole_model 16 3
log="$out/emulate_fine_8.log"
timeout 200 "$bin/dbsp" run --emulate 8 --workload wan2.1-720p --backend cuda --strategy all \
  --fine-keep 0.3 --layers 8 --steps 1 --link-gbps 193.9 --latency-us 68.1 --head-chunks 2 \
  --plan-ahead >"$log" 2>&1
stamp "emulate fine 8 exit $?"
sed -n '/^summary/,$p' "$log"
awk '$3 == "dbsp" {print $2, $4, $11, $12, $13, $14}' "$log" | tr '\n' '|'; echo "(dbsp: layer grid setup a2a ring total)"
stamp done
