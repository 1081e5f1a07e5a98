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
  # wgmma launches with these options: 0-2 checks; dense 3-5; block 6-8; fine 9-11.
  for shape in wan2.1-480p cogvideox1.5; do
    echo "== ncu: wgmma block-sparse (launch 7), $shape, 10% uniform"
    timeout 200 ncu --kernel-name regex:sparse_attention_sm90 --launch-skip 7 --launch-count 1 \
      --set full --import-source yes "$deps/bin/bench_attention" --no-peers --shapes "$shape" \
      --densities 0.1 --sources uniform --kernels wgmma --reps 1 >"$out/ncu_$shape.txt" 2>&1
    echo "ncu exit $?"
    grep -E "sparse_attention_sm90|^    Duration|Compute \(SM\) Throughput|^    Memory Throughput|L2 Cache Throughput|L1/TEX Cache Throughput|DRAM Throughput|Issue Slots Busy|Issued Ipc|No Eligible|Achieved Occupancy|Warp Cycles Per Issued|Executed Instructions  " "$out/ncu_$shape.txt" | head -40
  done
fi
