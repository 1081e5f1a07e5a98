#!/usr/bin/env bash
# Do the ring's K/V transfer and the head chunks' all-to-alls overlap the attention kernel on the
# real machine? Runs `dbsp run --backend cuda` (Wan2.1-480p, 2 GPUs) under settings that change
# where the transfers run: the default (NCCL kernels on SMs), SMs left free beside the attention
# kernel with NCCL held to as few channels (`--ring-reserved-sms`, NCCL_MAX_NCHANNELS), and the
# head-chunk pipeline of grids without a ring (`--head-chunks`). Same binaries and environment as
# device_run.sh; logs to $OUT.
#   usage: [STRATEGIES="ring ulysses dbsp"] [CONFIGS="name|env|reserve|chunks ..."]
#          bash bench/runtime/overlap_probe.sh [layers] [steps]
set -uo pipefail
# shellcheck source=bench/runtime/device_env.sh
source "$(dirname "$0")/device_env.sh"
out=${OUT:-/tmp/dbsp_overlap_out}
mkdir -p "$out"
layers=${1:-8}
steps=${2:-2}
# config name | environment | reserved SMs | head chunks (grids without a ring)
# (NCCL_P2P_USE_CUDA_MEMCPY=1 hung NCCL's peer copies on the 2 x H200 machine: not run by default)
configs=(
  "default||0|1"
  "reserve16-ch8|NCCL_MAX_NCHANNELS=8|16|1"
  "reserve32-ch16|NCCL_MAX_NCHANNELS=16|32|1"
  "chunks2||0|2"
  "chunks2-reserve16-ch8|NCCL_MAX_NCHANNELS=8|16|2"
  "chunks4-reserve16-ch8|NCCL_MAX_NCHANNELS=8|16|4"
)
if [ -n "${CONFIGS:-}" ]; then read -ra configs <<<"$CONFIGS"; fi
for config in "${configs[@]}"; do
  IFS='|' read -r name env reserve chunks <<<"$config"
  for strategy in ${STRATEGIES:-ring ulysses dbsp}; do
    # shellcheck disable=SC2086
    timeout 150 env $env $mpirun ${env:+-x ${env%%=*}} -np 2 "$bin/dbsp" run \
      --workload wan2.1-480p --backend cuda --strategy "$strategy" --layers "$layers" \
      --steps "$steps" --ring-reserved-sms "$reserve" --head-chunks "$chunks" >"$out/run.log" 2>&1
    status=$?
    wall=$(awk '/^summary/ {print $3}' "$out/run.log")
    echo "$name $strategy exit $status: wall $wall ms; rank 0: $(awk '/^ rank/ {getline; print "compute", $2, "comm", $3, "wait", $4, "idle", $5, "setup", $6}' "$out/run.log")"
    { echo "---- $name $strategy"; cat "$out/run.log"; } >>"$out/overlap.log"
  done
done
rm -f "$out/run.log"
