#!/usr/bin/env bash
# The planner on a server core (device tool, from the repository root): the unit tests (every
# build of the counting kernels this CPU runs, AVX-512 included where present), then
# bench_planner on a few single cores, once per instruction set. Binaries come built from the
# development machine in .deps/runtime/bin; logs go to $OUT.
#   usage: [CORES="3 5 7"] bash bench/planner_on_host.sh
set -uo pipefail
deps=.deps/runtime
out=${OUT:-/tmp/dbsp_planner_out}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/$deps/lib:${LD_LIBRARY_PATH:-}
export OMP_NUM_THREADS=1
{ grep -m1 "model name" /proc/cpuinfo; grep -m1 flags /proc/cpuinfo | tr ' ' '\n' |
  grep -E "^avx(2|512f|512vl|512_vpopcntdq)$" | tr '\n' ' '; echo; uptime; } | tee "$out/host.txt"
timeout 120 "$deps/bin/dbsp_unit_tests" --gtest_brief=1 >"$out/unit_tests.log" 2>&1
echo "unit tests exit $?: $(grep -E '^\[  (PASSED|FAILED|SKIPPED)' "$out/unit_tests.log" | tr '\n' ' ')"
for core in ${CORES:-3 5 7}; do
  for simd in avx512 avx2; do
    taskset -c "$core" "$deps/bin/bench_planner" --simd=$simd --benchmark_min_time=0.2 \
      --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
      --benchmark_filter='mask_stat|plan_layer|choose' >"$out/bench.log" 2>&1
    echo "core $core $simd exit $?"
    { echo "---- core $core simd $simd"; cat "$out/bench.log"; } >>"$out/planner_bench.log"
    grep -E "_median" "$out/bench.log" | awk -v c="$core" -v s="$simd" '{print "  " c, s, $0}'
  done
done
rm -f "$out/bench.log"
