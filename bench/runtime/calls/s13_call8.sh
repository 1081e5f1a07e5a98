#!/usr/bin/env bash
# Session 13, call 8, on one H200: shared rows now run in the kernel of their group's last own
# head (HeadChunks) instead of a chunk of their own. Whole model at P = 16 and 8, three chunks,
# the probed link: dbsp and dbsp-shared beside the best static grids, this binary and the one
# before (c08222d); then the NCCL tests at P = 1.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
for p in 16 8; do
  static=$([ "$p" = 16 ] && echo usp:4x4 || echo ring)
  for b in dbsp dbsp_before; do
    timeout 200 "$bin/$b" run --emulate $p --workload wan2.1-720p --backend cuda \
      --strategy "$static,dbsp,dbsp-shared" --layers 40 --steps 1 --link-gbps 220.8 \
      --latency-us 91.3 --head-chunks 3 --plan-ahead >"$out/emulate_${p}_$b.log" 2>&1
    stamp "$b emulate $p exit $?"
    sed -n '/^summary/,/^dbsp-shared /p' "$out/emulate_${p}_$b.log"
    for s in dbsp dbsp-shared; do
      echo "$s: $(awk -v s=$s '$3 == s {print $4}' "$out/emulate_${p}_$b.log" | sort | uniq -c | tr '\n' ' ')"
    done
  done
done
nccl_tests_np1
stamp done
