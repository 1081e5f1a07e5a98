#!/usr/bin/env bash
# Session 11, call 8 (binary of 4a79e8e, reverted after it): PlanCache plans only the grids that
# can win (fastest_plan) instead of every factorization: dbsp's planner time and exposed host
# work at P = 16 (C = 4) and P = 8 (C = 3), the commit before in the same call.
set -uo pipefail
source bench/runtime/calls/call_env.sh
emulate_whole_model 16 4
DBSP=dbsp_before emulate_whole_model 16 4
emulate_whole_model 8 3
DBSP=dbsp_before emulate_whole_model 8 3
stamp done
