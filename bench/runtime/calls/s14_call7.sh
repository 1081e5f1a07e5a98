#!/usr/bin/env bash
# Session 14, call 7, on one H200: the whole model at the session's last binary (59420c4), every
# strategy, P = 16 and 8, as s13_call10.sh (default head chunks, the probed link, --plan-ahead).
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
for p in 16 8; do
  timeout 240 "$bin/dbsp" run --emulate $p --workload wan2.1-720p --backend cuda --strategy all \
    --layers 40 --steps 1 --link-gbps 220.8 --latency-us 91.3 --plan-ahead \
    >"$out/emulate_${p}_default.log" 2>&1
  stamp "emulate $p exit $?"
  sed -n '/^summary/,/^ceiling/p' "$out/emulate_${p}_default.log"
  awk '$3 == "dbsp" {print $4}' "$out/emulate_${p}_default.log" | sort | uniq -c | tr '\n' ' '; echo
done
stamp done
