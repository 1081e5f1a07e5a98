#!/usr/bin/env bash
# One call on the lent 2-GPU machine (device tool, from the repository root): the NCCL tests at
# P = 1 and 2, the link probe, `dbsp run --backend cuda` on Wan2.1-480p for every P = 2 strategy
# (given masks, then masks estimated every call with --estimate), and `dbsp run --emulate P` on
# Wan2.1-720p for P = 4, 8, 16 priced with the probed link.
# Binaries are built on the development machine and carried in .deps/runtime/{bin,lib}; the
# machine's own Open MPI and NCCL are used. Logs go to $OUT.
#   usage: [RESERVES="0 8"] [SKIP_EMULATION=1] bash bench/runtime/device_run.sh [layers] [steps]
#          [emulated layers]
set -uo pipefail
# shellcheck source=bench/runtime/device_env.sh
source "$(dirname "$0")/device_env.sh"
mpirun="$mpirun -np"
out=${OUT:-/tmp/dbsp_runtime_out}
mkdir -p "$out"
layers=${1:-8}
steps=${2:-2}
emulated_layers=${3:-4}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,temperature.gpu --format=csv \
  | tee "$out/device.txt"

if [ -x "$bin/dbsp_gpu_tests" ]; then
  echo "== kernel gpu tests (one GPU)"
  CUDA_VISIBLE_DEVICES=0 timeout 200 "$bin/dbsp_gpu_tests" --gtest_brief=1 >"$out/gpu_tests.log" 2>&1
  echo "gpu tests exit $?"
  grep -E "PASSED|FAILED|SKIPPED" "$out/gpu_tests.log" | sort | uniq -c | head -20
fi

echo "== nccl tests"
for np in 1 2; do
  echo "---- np$np" >>"$out/nccl_tests.log"
  timeout 240 $mpirun $np "$bin/dbsp_nccl_tests" --gtest_brief=1 >>"$out/nccl_tests.log" 2>&1
  echo "np$np exit $?"
done
grep -E "PASSED|FAILED|SKIPPED|Failure|error" "$out/nccl_tests.log" | sort | uniq -c | head -30

echo "== link probe"
timeout 60 $mpirun 2 "$bin/bench_link_probe" 256 2>&1 | tee "$out/link_probe.log"
gbps=$(awk '/^link:/ {print $2}' "$out/link_probe.log")
lat=$(awk '/^link:/ {print $4}' "$out/link_probe.log")
gbps=${gbps:-300}
lat=${lat:-20}

echo "== dbsp run --backend cuda, 2 GPUs, wan2.1-480p"
timeout 120 $mpirun 2 "$bin/dbsp" run --workload wan2.1-480p --backend cuda --strategy dbsp \
  --layers 2 --steps 1 --check --check-blocks 2 >"$out/runs.log" 2>&1
echo "check exit $?"
grep -E "check:|error" "$out/runs.log"
# RESERVES: the --ring-reserved-sms values to compare (SMs left free for the ring transfer).
for reserve in ${RESERVES:-0}; do
  for strategy in ulysses ring dbsp-paper dbsp; do
    timeout 150 $mpirun 2 "$bin/dbsp" run --workload wan2.1-480p --backend cuda \
      --strategy "$strategy" --layers "$layers" --steps "$steps" --link-gbps "$gbps" \
      --latency-us "$lat" --ring-reserved-sms "$reserve" >"$out/run.log" 2>&1
    echo "reserve $reserve $strategy exit $?: $(grep -E '^summary' -A3 "$out/run.log" | tr '\n' ' ')"
    { echo "---- reserve $reserve strategy $strategy"; cat "$out/run.log"; } >>"$out/runs.log"
  done
done
rm -f "$out/run.log"

echo "== dbsp run --estimate: each layer's mask estimated from the workload's Q/K by the sharded estimator"
timeout 200 $mpirun 2 "$bin/dbsp" run --workload wan2.1-480p --backend cuda --strategy dbsp \
  --estimate --layers 2 --steps 1 --check --check-blocks 1 >"$out/estimate.log" 2>&1
echo "estimate check exit $?: $(grep -E '^(check:|estimated masks|mask estimation)' "$out/estimate.log" | tr '\n' ' ')"
for strategy in ulysses ring dbsp; do
  timeout 200 $mpirun 2 "$bin/dbsp" run --workload wan2.1-480p --backend cuda \
    --strategy "$strategy" --estimate --layers "$layers" --steps "$steps" --link-gbps "$gbps" \
    --latency-us "$lat" >"$out/run.log" 2>&1
  echo "estimate $strategy exit $?: $(grep -E '^(summary|mask estimation)' -A1 "$out/run.log" | tr '\n' ' ')"
  { echo "---- estimate strategy $strategy"; cat "$out/run.log"; } >>"$out/estimate.log"
done
rm -f "$out/run.log"

echo "== dbsp run --fine-keep 0.3 (FG-Attn key lists: each kept block thinned to 30% of its keys)"
timeout 200 $mpirun 2 "$bin/dbsp" run --workload wan2.1-480p --backend cuda --strategy dbsp \
  --fine-keep 0.3 --layers 2 --steps 1 --check --check-blocks 1 >"$out/fine.log" 2>&1
echo "fine check exit $?: $(grep -E '^check:' "$out/fine.log")"
for strategy in ulysses ring dbsp; do
  timeout 200 $mpirun 2 "$bin/dbsp" run --workload wan2.1-480p --backend cuda \
    --strategy "$strategy" --fine-keep 0.3 --layers "$layers" --steps "$steps" \
    --link-gbps "$gbps" --latency-us "$lat" >"$out/run.log" 2>&1
  echo "fine $strategy exit $?: $(grep -E '^summary' -A1 "$out/run.log" | tr '\n' ' ')"
  { echo "---- fine strategy $strategy"; cat "$out/run.log"; } >>"$out/fine.log"
done
rm -f "$out/run.log"

if [ -n "${SKIP_EMULATION:-}" ]; then exit 0; fi
echo "== emulated: 720p at P = 4, 8, 16 and 480p at P = 2 (the real run's twin); link $gbps GB/s + $lat us"
# emulate P GPU WORKLOAD LAYERS STEPS
emulate() {
  CUDA_VISIBLE_DEVICES=$2 timeout 300 "$bin/dbsp" run --emulate "$1" --workload "$3" \
    --backend cuda --strategy all --layers "$4" --steps "$5" --link-gbps "$gbps" \
    --latency-us "$lat" >"$out/emulate_$1_$3.part" 2>&1
  echo "emulate $1 $3 exit $?"
}
emulate 4 0 wan2.1-720p "$emulated_layers" 1 &
emulate 8 1 wan2.1-720p "$emulated_layers" 1 &
wait
emulate 16 0 wan2.1-720p "$emulated_layers" 1 &
emulate 2 1 wan2.1-480p "$layers" "$steps" &
wait
for part in "$out"/emulate_*.part; do
  echo "-- $(basename "$part" .part)"
  sed -n '/^summary/,$p' "$part"
  { echo "---- $(basename "$part" .part)"; cat "$part"; } >>"$out/emulate.log"
  rm -f "$part"
done
