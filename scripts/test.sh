#!/usr/bin/env bash
# The README's test command: install dependencies, build (CPU preset; CUDA sources too when nvcc
# is present), run every test that needs no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
preset=cpu
if command -v nvcc >/dev/null 2>&1 && [ "${DBSP_CI_CUDA:-1}" = 1 ]; then preset=cuda; fi
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$(nproc)"
# Open MPI refuses to run as root and to oversubscribe unless told; CI runs as root on 2 cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 PRTE_MCA_rmaps_default_mapping_policy=:oversubscribe
ctest --test-dir "build/$preset" --output-on-failure -LE gpu -j "$(nproc)"
