#!/usr/bin/env bash
# Session 16, call 3, on one H200: dbsp alone at P = 16 with --rank-times, twice, after `dbsp`
# keeps freed host memory (tools/host_memory.hpp) and prints when each head chunk's output
# all-to-all leaves and after which rank's kernel.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
emulate_list 16 dbsp_ranks dbsp --rank-times
emulate_list 16 dbsp_ranks_again dbsp --rank-times
stamp done
