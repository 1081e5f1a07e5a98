#!/usr/bin/env bash
# Session 11, call 2: what dbsp's per-layer grid pick and the head-chunk count leave on the table.
# The whole model with db-SP also held to each grid (dbsp:UxR beside dbsp's own pick), at P = 16
# with 2, 3 and 4 head chunks, P = 8 with 2 and 3, and P = 4 with 4.
set -uo pipefail
source bench/runtime/calls/call_env.sh
for c in 3 2 4; do STRATEGY=all,dbsp:16x1,dbsp:8x2,dbsp:4x4 emulate_whole_model 16 "$c"; done
for c in 2 3; do STRATEGY=all,dbsp:8x1,dbsp:4x2 emulate_whole_model 8 "$c"; done
STRATEGY=all,dbsp:4x1,dbsp:2x2 emulate_whole_model 4 4
stamp done
