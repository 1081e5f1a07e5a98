#!/usr/bin/env bash
# One call on the lent GPU machine (device tool, run from the repository root): the GPU tests,
# compute-sanitizer memcheck on small cases, and bench_attention, from binaries built on the
# development machine and carried in .deps/kernels (bin/ and lib/). Logs go to $OUT.
#   usage: bash bench/attention/device_run.sh [test-timeout] [bench-timeout] [bench args...]
# The warp-specialised kernel's tests run first under their own short timeout: if they hang or
# fail, the bench drops that family (KERNELS, default "ws wgmma") so the other figures survive.
set -uo pipefail
deps=.deps/kernels
out=${OUT:-/tmp/dbsp_device_out}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/$deps/lib:${LD_LIBRARY_PATH:-}
test_timeout=${1:-150}
bench_timeout=${2:-360}
shift 2 || true
kernels=${KERNELS:-ws wgmma}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
  --format=csv | tee "$out/device.txt"
echo "== warp-specialised kernel tests (and the tests that loop over every family)"
timeout 120 "$deps/bin/dbsp_gpu_tests" --gtest_filter='*warp_specialized*:SparseAttention.*' \
  >"$out/ws_tests.log" 2>&1
ws_status=$?
echo "ws tests exit $ws_status"
grep -E "FAILED|PASSED|Failure|error|Expected|Which is|rows |\[ RUN" "$out/ws_tests.log" | tail -30
if [ "$ws_status" -ne 0 ]; then
  kernels=${kernels//ws/}
  # Without a working new kernel the bench would only repeat known figures: stop unless asked.
  [ -n "${BENCH_ANYWAY:-}" ] || skip_bench=1
fi
echo "== gpu tests (the others)"
timeout "$test_timeout" "$deps/bin/dbsp_gpu_tests" --gtest_brief=1 --gtest_filter='-*warp_specialized*:SparseAttention.*' \
  >"$out/gpu_tests.log" 2>&1
echo "gpu tests exit $?"
grep -E "FAILED|PASSED|SKIPPED|Failure|error|Expected|Which is|rows " "$out/gpu_tests.log" | head -40
echo "== memcheck"
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 3 "$deps/bin/dbsp_gpu_tests" \
  --gtest_brief=1 \
  --gtest_filter='*bf16_d64_bq64_bk64*:*fp16_d128_bq64_bk64*:SparseAttention.EmptyMask*:SparseAttention.NonUniform*:MergePartial.*:MaskEstimation.Estimated*' \
  >"$out/memcheck.log" 2>&1
echo "memcheck exit $?"
tail -5 "$out/memcheck.log"
if [ -n "${skip_bench:-}" ]; then echo "== bench skipped"; exit 1; fi
echo "== bench (kernels: $kernels)"
# shellcheck disable=SC2086
PYTHONUNBUFFERED=1 timeout "$bench_timeout" "$deps/bin/bench_attention" --csv "$out/bench.csv" \
  --kernels $kernels "$@" 2>&1 | tee "$out/bench.log" | grep -v "^peers.py" | tail -80
if [ -n "${PROFILE:-}" ]; then
  # Launches per family with these options: 0-2 checks; dense 3-5; block 6-8; fine 9-11.
  shape=wan2.1-480p
  for family in ${PROFILE_KERNELS:-$kernels}; do
    for launch in ${PROFILE_LAUNCHES:-7}; do
      echo "== ncu: $family launch $launch (4 dense, 7 block, 10 fine), $shape, 10% uniform"
      timeout 100 ncu --kernel-name regex:sparse_attention --launch-skip "$launch" --launch-count 1 \
        --set full --import-source yes "$deps/bin/bench_attention" --no-peers --shapes "$shape" \
        --densities 0.1 --sources uniform --kernels "$family" --reps 1 --equal-mass-shape "" \
        >"$out/ncu_one.txt" 2>&1
      echo "ncu exit $?"
      cat "$out/ncu_one.txt" >>"$out/ncu.txt"
      grep -E "sparse_attention|^    Duration|Compute \(SM\) Throughput|^    Memory Throughput|L2 Cache Throughput|L1/TEX Cache Throughput|DRAM Throughput|Issue Slots Busy|Issued Ipc|No Eligible|Achieved Occupancy|Warp Cycles Per Issued|Executed Instructions  " "$out/ncu_one.txt" | head -40
    done
  done
  rm -f "$out/ncu_one.txt"
fi
