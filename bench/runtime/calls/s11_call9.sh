#!/usr/bin/env bash
# Session 11, call 9: head chunks now run at P = 1 when asked, so one GPU runs the pipelined
# device path (two compute streams, per-chunk copies and output waits) for the first time: the
# NCCL tests at P = 1 (their chunk tests compare 2, 3 and 7 chunks bit for bit with the whole
# layer, a reordered head order among the partitions), the chunk tests under compute-sanitizer
# (memcheck, racecheck), and one emulated layer set at P = 1 with chunks.
set -uo pipefail
source bench/runtime/calls/call_env.sh
nccl_tests_np1
grep -E "HeadChunks" "$out/nccl_tests.log" | head
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
if [ -n "$sanitizer" ]; then
  for tool in memcheck racecheck; do
    stamp "compute-sanitizer $tool"
    timeout 200 "$sanitizer" --tool "$tool" --error-exitcode 3 "$bin/dbsp_nccl_tests" \
      --gtest_filter='*HeadChunks*' --gtest_brief=1 >"$out/sanitizer_$tool.log" 2>&1
    echo "$tool exit $?"
    grep -E "ERROR SUMMARY|PASSED|FAILED|RACECHECK SUMMARY" "$out/sanitizer_$tool.log" | head -5
  done
else
  echo "no compute-sanitizer on this machine"
fi
stamp done
