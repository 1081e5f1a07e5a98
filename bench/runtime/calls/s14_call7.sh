#!/usr/bin/env bash
# Session 14, call 7, on one H200: the whole model at the session's last binary (59420c4), every
# strategy, P = 16 and 8, as s13_call10.sh (default head chunks, the probed link, --plan-ahead).
set -uo pipefail
OUT=${OUT:-/tmp/out}/logs
source bench/runtime/calls/call_env.sh
for p in 16 8; do emulate_default $p; done
stamp done
