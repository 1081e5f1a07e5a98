#!/usr/bin/env bash
# Session 17, call 6, on one H200, at 7350dbb (the naive bf16 fine path): the NCCL tests at P = 1,
# whose fine tests now apply the whole bf16 rule, then checked runs at P = 1 on Wan2.1-480p masks:
# fine (--fine-keep 0.3) with dbsp and ulysses in three head chunks, and a block run.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
cat "$bin/BUILT_AT"
nccl_tests 1
grep -E "DeviceFine|Fine.*(OK|FAILED)|vs the fp64 fine" "$out/nccl_tests.log" | head -20
checked() {  # checked NAME [dbsp run flags]
  local name=$1; shift
  timeout 150 $mpirun -np 1 "$bin/dbsp" run --workload wan2.1-480p --backend cuda --layers 2 \
    --steps 1 --check --check-blocks 3 "$@" >"$out/check_$name.log" 2>&1
  stamp "check $name exit $?"
  grep -E "^check:|err/limit|FAIL" "$out/check_$name.log" | head -6
}
checked fine_dbsp --strategy dbsp --fine-keep 0.3
checked fine_ulysses_chunks --strategy ulysses --fine-keep 0.3 --head-chunks 3
checked block_dbsp --strategy dbsp
stamp done
