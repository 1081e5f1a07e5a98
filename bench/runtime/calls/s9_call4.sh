#!/usr/bin/env bash
# Session 9, call 4: the emulator also charges the schedule table's upload (timed pinned copies);
# the cost model's staging default is 1100 GB/s. The whole model emulated at P = 8 and 16, and
# fine masks (720p, 8 layers, --fine-keep 0.3) at P = 8, whose key lists make most of the upload.
set -uo pipefail
source bench/runtime/calls/call_env.sh
emulate_whole_model 8 2
emulate_whole_model 16 3
emulate_fine 8
stamp done
