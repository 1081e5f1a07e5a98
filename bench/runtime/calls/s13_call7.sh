#!/usr/bin/env bash
# Session 13, call 7, on one H200: call 6's twin again with the timer's inputs uniform in [-1, 1)
# (dbsp run's seeded inputs) instead of call 6's +-[2^-8, 2), which overshot the real ranks.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
for c in 1 3; do
  timeout 120 "$bin/dbsp" run --emulate 2 --workload wan2.1-480p --backend cuda \
    --strategy ulysses,ring,dbsp-paper,dbsp --layers 8 --steps 2 --link-gbps 220.8 \
    --latency-us 91.3 --head-chunks $c >"$out/twin_chunks$c.log" 2>&1
  stamp "chunks $c exit $?"
  sed -n '/^summary/,/^dbsp /p' "$out/twin_chunks$c.log"
done
stamp done
