#!/usr/bin/env bash
# Session 10, call 3: the emulator charges the host's table work (copy lists built and timed, the
# pinned fill charged at a timed rate). NCCL tests at P = 1; the whole model at P = 16 and 8; fine
# masks (720p, 8 layers, --fine-keep 0.3) at P = 8 before (dbsp_before: ebf023f) and after.
set -uo pipefail
source bench/runtime/calls/call_env.sh
nccl_tests_np1
emulate_whole_model 16 3
emulate_whole_model 8 2
for binary in dbsp_before dbsp; do
  log="$out/emulate_fine_8_$binary.log"
  timeout 200 "$bin/$binary" run --emulate 8 --workload wan2.1-720p --backend cuda \
    --strategy all --fine-keep 0.3 --layers 8 --steps 1 --link-gbps 193.9 --latency-us 68.1 \
    --head-chunks 2 --plan-ahead >"$log" 2>&1
  stamp "$binary: emulate fine 8 exit $?"
  sed -n '/^summary/,$p' "$log"
  awk '$3 == "dbsp" {print $2, $4, $11, $12, $13, $14}' "$log" | tr '\n' '|'
  echo "(dbsp: layer grid setup a2a ring total)"
done
stamp done
