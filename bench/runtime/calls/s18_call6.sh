#!/usr/bin/env bash
# Session 18, call 6, on one H200, at e4a946a (fine layers take no split scratch): the NCCL tests
# at P = 1 and checked 480p runs at P = 1 (fine with dbsp, block with dbsp).
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
cat "$bin/BUILT_AT"
nccl_tests 1
checked() {  # checked NAME [dbsp run flags]
  local name=$1; shift
  timeout 150 $mpirun -np 1 "$bin/dbsp" run --workload wan2.1-480p --backend cuda --layers 2 \
    --steps 1 --check --check-blocks 3 "$@" >"$out/check_$name.log" 2>&1
  stamp "check $name exit $?"
  grep -E "^check:|err/limit|FAIL" "$out/check_$name.log" | head -6
}
checked fine_dbsp --strategy dbsp --fine-keep 0.3
checked block_dbsp --strategy dbsp
stamp done
