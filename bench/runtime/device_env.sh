# Sourced by the runtime's device scripts (device_run.sh, overlap_probe.sh): the carried binaries
# and libraries, and the environment Open MPI and NCCL need on the lent machine.
deps=.deps/runtime
bin=$deps/bin
export LD_LIBRARY_PATH=$PWD/$deps/lib:${LD_LIBRARY_PATH:-}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
export OMPI_MCA_btl_vader_single_copy_mechanism=none
# Host-side schedule work is threaded; two ranks share the machine's cores.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
# OpenMP's threads sleep once a region ends instead of spinning: spinning delayed the ranks' serial
# host setup by 2-15 ms in a fifth to half of the layers (docs/runtime.md, host jitter).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
mpirun="mpirun --bind-to none -x OMP_NUM_THREADS -x OMP_WAIT_POLICY -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE"
