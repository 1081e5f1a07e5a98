#!/usr/bin/env bash
# Session 16, call 2, on one H200: dbsp alone at P = 16 with --rank-times (now with the head
# chunks' all-to-alls, and the block-list kernel charged), three times: as is, with OpenMP's
# threads spinning (OMP_WAIT_POLICY=active), and with glibc keeping freed memory (no fresh pages
# per schedule): which one removes the host setup's spikes.
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
emulate_list 16 dbsp_ranks dbsp --rank-times
OMP_WAIT_POLICY=passive emulate_list 16 dbsp_passive dbsp --rank-times
GLIBC_TUNABLES=glibc.malloc.trim_threshold=4000000000:glibc.malloc.mmap_threshold=4000000000 \
  emulate_list 16 dbsp_keep dbsp --rank-times
stamp done
