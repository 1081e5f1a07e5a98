#!/usr/bin/env bash
# One call on the lent GPU machine (device tool, run from the repository root): the GPU tests,
# compute-sanitizer memcheck on small cases, and bench_attention, from binaries built on the
# development machine and carried in .deps/kernels (bin/ and lib/). Logs go to $OUT.
#   usage: bash bench/attention/device_run.sh [test-timeout] [bench-timeout] [bench args...]
set -uo pipefail
deps=.deps/kernels
out=${OUT:-/tmp/dbsp_device_out}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/$deps/lib:${LD_LIBRARY_PATH:-}
test_timeout=${1:-150}
bench_timeout=${2:-360}
shift 2 || true
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
  --format=csv | tee "$out/device.txt"
echo "== gpu tests"
timeout "$test_timeout" "$deps/bin/dbsp_gpu_tests" --gtest_brief=1 >"$out/gpu_tests.log" 2>&1
echo "gpu tests exit $?"
grep -E "FAILED|PASSED|SKIPPED|Failure|error|Expected|Which is|rows " "$out/gpu_tests.log" | head -40
echo "== memcheck"
timeout 100 compute-sanitizer --tool memcheck --error-exitcode 3 "$deps/bin/dbsp_gpu_tests" \
  --gtest_brief=1 \
  --gtest_filter='*bf16_d64_bq64_bk64*:*fp16_d128_bq64_bk64*:SparseAttention.EmptyMask*:SparseAttention.NonUniform*:MergePartial.*:MaskEstimation.Estimated*' \
  >"$out/memcheck.log" 2>&1
echo "memcheck exit $?"
tail -5 "$out/memcheck.log"
echo "== bench"
PYTHONUNBUFFERED=1 timeout "$bench_timeout" "$deps/bin/bench_attention" --csv "$out/bench.csv" "$@" \
  2>&1 | tee "$out/bench.log" | grep -v "^peers.py" | tail -80
if [ -n "${PROFILE:-}" ]; then
  echo "== ncu (one launch of each attention kernel family, 480p, 10% uniform block mask)"
  timeout 240 ncu --kernel-name regex:sparse_attention --launch-skip 2 --launch-count 2 \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    --section WarpStateStats --section Occupancy --section LaunchStats \
    "$deps/bin/bench_attention" --no-peers --shapes wan2.1-480p --densities 0.1 \
    --sources uniform --reps 1 >"$out/ncu.txt" 2>&1
  echo "ncu exit $?"
  grep -E "sparse_attention|Duration|Compute \(SM\) Throughput|Memory Throughput|L2 Cache Throughput|Issue Slots Busy|Registers Per|Achieved Occupancy|Stall|Warp Cycles Per Issued" "$out/ncu.txt" | head -60
fi
