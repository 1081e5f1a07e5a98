#!/usr/bin/env bash
# Session 14, call 4, on one H200: heads balanced by their kernels' longest-first makespan
# (--kernel-slots 264, the new default) against by kept blocks (--kernel-slots 0). The whole
# model (Wan2.1-720p, 40 layers, --plan-ahead, the link of session 13's probe) emulated at P = 16
# and 8: every strategy with the new weights, then dbsp with the old ones, then dbsp with the new
# ones again (the run-to-run noise).
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
run() {  # P strategy slots tag
  timeout 220 "$bin/dbsp" run --emulate "$1" --workload wan2.1-720p --backend cuda --strategy "$2" \
    --layers 40 --steps 1 --link-gbps 220.8 --latency-us 91.3 --plan-ahead --kernel-slots "$3" \
    >"$out/emulate_$1_$4.log" 2>&1
  stamp "emulate $1 $2 slots $3 exit $?"
  sed -n '/^summary/,/^ceiling/p' "$out/emulate_$1_$4.log" | grep -E "strategy|^dbsp|usp|ring|ulysses|ceiling"
  awk '$3 == "dbsp" {print $4}' "$out/emulate_$1_$4.log" | sort | uniq -c | tr '\n' ' '; echo
}
run 16 all 264 all_new
run 16 dbsp 0 dbsp_old
run 16 dbsp 264 dbsp_new
run 8 all 264 all_new
run 8 dbsp 0 dbsp_old
stamp done
