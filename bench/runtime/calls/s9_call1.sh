#!/usr/bin/env bash
# Session 9, call 1: NCCL tests at P = 1 (the device code of 924f32f, 393520f and later), 480p
# fine masks at P = 1 with the session-8 binary (dbsp_before) beside this one (the pinned table
# filled by every core), and the whole model emulated at P = 8 with staging copies charged.
set -uo pipefail
source bench/runtime/calls/call_env.sh
nccl_tests_np1
stamp "fine 480p"
{
  timeout 120 $mpirun -np 1 "$bin/dbsp" run --workload wan2.1-480p --backend cuda --strategy dbsp \
    --fine-keep 0.3 --layers 2 --steps 2 --plan-ahead --check --check-blocks 2 2>&1 |
    grep -E '^(check|planned ahead)' | tr '\n' ' '; echo
  for round in 1 2; do
    for binary in dbsp_before dbsp; do
      for flag in "" "--plan-ahead"; do
        log=$(mktemp)
        timeout 120 $mpirun -np 1 "$bin/$binary" run --workload wan2.1-480p --backend cuda \
          --strategy dbsp --fine-keep 0.3 --layers 8 --steps 2 $flag >"$log" 2>&1
        echo "round $round $binary '$flag' exit $?: $(grep -E '^(forward calls|planned ahead)' "$log" | tr '\n' ' ' | cut -c1-300)"
        grep -A1 "^ rank" "$log" | tail -2
      done
    done
  done
} >"$out/fine_480.log" 2>&1
cat "$out/fine_480.log"
emulate_whole_model 8 2
stamp done
