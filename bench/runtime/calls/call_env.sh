# Sourced by the call scripts of session 9 on (s9_call*.sh, s10_call*.sh): the carried binaries and environment
# (device_env.sh), the output folder, a time stamp, the device line, and the two runs most calls
# make: the NCCL tests at P = 1, and the whole model (Wan2.1-720p, 40 layers, --plan-ahead)
# emulated at P virtual ranks with every strategy.
source bench/runtime/device_env.sh
out=${OUT:-/tmp/out}; mkdir -p "$out"
stamp() { echo "[$(date +%T)] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/device.txt"

# nccl_tests NP: the NCCL tests at P = NP (log nccl_tests.log at P = 1, nccl_tests_npNP.log else).
nccl_tests() {
  local log="$out/nccl_tests$([ "$1" = 1 ] || echo "_np$1").log"
  stamp "nccl tests np$1"
  local limit=$([ "$1" = 1 ] && echo 200 || echo 240)
  timeout "$limit" $mpirun -np "$1" "$bin/dbsp_nccl_tests" --gtest_brief=1 >"$log" 2>&1
  echo "np$1 exit $?"
  grep -E "PASSED|FAILED|SKIPPED|Failure" "$log" | sort | uniq -c | head -30
}
nccl_tests_np1() { nccl_tests 1; }

# emulate_whole_model P CHUNKS [extra dbsp run flags]: the summary, and dbsp's grid per layer.
# DBSP=dbsp_before runs the carried binary of the commit before (its log named after it);
# STRATEGY=list replaces --strategy all (e.g. all,dbsp:16x1: dbsp held to a grid beside its pick).
emulate_whole_model() {
  local binary=${DBSP:-dbsp}
  local log="$out/emulate_$1_chunks$2${3:+_extra}${STRATEGY:+_grids}${DBSP:+_$DBSP}.log"
  timeout 240 "$bin/$binary" run --emulate "$1" --workload wan2.1-720p --backend cuda \
    --strategy "${STRATEGY:-all}" --layers 40 --steps 1 --link-gbps 193.9 --latency-us 68.1 \
    --head-chunks "$2" --plan-ahead ${3:-} >"$log" 2>&1
  stamp "$binary: emulate $1 chunks $2 '${3:-}' exit $?"
  sed -n '/^summary/,$p' "$log"
  awk '$3 == "dbsp" {print $4}' "$log" | sort | uniq -c | tr '\n' ' '
  echo "(dbsp's grids over the layers)"
}

# emulate_fine P: fine masks (720p, 8 layers, --fine-keep 0.3, two head chunks) emulated at P
# virtual ranks with every strategy; the summary, then dbsp's and ring's layers.
emulate_fine() {
  local binary=${DBSP:-dbsp}
  local log="$out/emulate_fine_$1${DBSP:+_$DBSP}.log"
  timeout 200 "$bin/$binary" run --emulate "$1" --workload wan2.1-720p --backend cuda \
    --strategy all --fine-keep 0.3 --layers 8 --steps 1 --link-gbps 193.9 --latency-us 68.1 \
    --head-chunks 2 --plan-ahead >"$log" 2>&1
  stamp "$binary: emulate fine $1 exit $?"
  sed -n '/^summary/,$p' "$log"
  awk '$3 == "dbsp" || $3 == "ring" {print $2, $3, $11, $12, $13, $14}' "$log" | tr '\n' '|'
  echo "(layer strategy setup a2a ring total)"
}

# emulate_default P: the whole model with every strategy, the default head chunks and session
# 13's probed link (220.8 GB/s, 91.3 us), --plan-ahead; the summary, then dbsp's grids.
emulate_default() {
  local log="$out/emulate_$1_default.log"
  timeout 240 "$bin/dbsp" run --emulate "$1" --workload wan2.1-720p --backend cuda --strategy all \
    --layers 40 --steps 1 --link-gbps 220.8 --latency-us 91.3 --plan-ahead >"$log" 2>&1
  stamp "emulate $1 exit $?"
  sed -n '2p;/^summary/,$p' "$log"
  awk '$3 == "dbsp" {print $4}' "$log" | sort | uniq -c | tr '\n' ' '; echo
}

# gpu_tests: the GPU kernel tests (log gpu_tests.log); the counts and any failure.
gpu_tests() {
  timeout 200 "$bin/dbsp_gpu_tests" --gtest_brief=1 >"$out/gpu_tests.log" 2>&1
  stamp "gpu tests exit $?"
  grep -E "PASSED|FAILED|SKIPPED|Failure" "$out/gpu_tests.log" | sort | uniq -c | head -30
}

# head_costs LAYERS: bench_head_costs over every head of LAYERS Wan2.1-720p layers, step 0, 264
# consumer slots (log head_split.log); its summary lines.
head_costs() {
  timeout 150 "$bin/bench_head_costs" wan2.1-720p "$1" 0 264 >"$out/head_split.log" 2>&1
  stamp "head split exit $?"
  grep -E "^over all|^split" "$out/head_split.log"
}

# emulate_ranks P STRATEGY [extra dbsp run flags]: the whole model (720p, 40 layers, --plan-ahead,
# session 13's probed link) for one strategy with --rank-times; the summary. The log is named
# after the strategy, with "_whole" when the flags hold --no-split-rows.
emulate_ranks() {
  local log="$out/emulate_$1_$2$(case "${3:-}" in *--no-split-rows*) echo _whole ;; esac).log"
  timeout 150 "$bin/dbsp" run --emulate "$1" --workload wan2.1-720p --backend cuda \
    --strategy "$2" --layers 40 --steps 1 --link-gbps 220.8 --latency-us 91.3 --plan-ahead \
    --rank-times ${3:-} >"$log" 2>&1
  stamp "emulate $1 $2 '${3:-}' exit $?"
  sed -n '/^summary/,/^dbsp/p' "$log"
}

# emulate_list P NAME STRATEGIES [extra dbsp run flags]: the whole model (720p, 40 layers,
# --plan-ahead, session 13's probed link) for a comma-separated list of strategies (e.g. dbsp
# beside dbsp:16x1, held to one grid); the summary (log emulate_P_NAME.log). DBSP=dbsp_before
# runs the carried binary of an earlier commit instead; STEPS=N runs N denoising steps (default 1).
emulate_list() {
  local binary=${DBSP:-dbsp}
  local log="$out/emulate_$1_$2.log"
  timeout 300 "$bin/$binary" run --emulate "$1" --workload wan2.1-720p --backend cuda \
    --strategy "$3" --layers 40 --steps "${STEPS:-1}" --link-gbps 220.8 --latency-us 91.3 \
    --plan-ahead ${4:-} >"$log" 2>&1
  stamp "$binary: emulate $1 $3 steps ${STEPS:-1} '${4:-}' exit $?"
  sed -n '/^summary/,$p' "$log"
}

# checked NAME [dbsp run flags]: a checked run at P = 1 on Wan2.1-480p masks (2 layers, 1 step,
# --check --check-blocks 3; log check_NAME.log); its verdict lines.
checked() {
  local name=$1; shift
  timeout 150 $mpirun -np 1 "$bin/dbsp" run --workload wan2.1-480p --backend cuda --layers 2 \
    --steps 1 --check --check-blocks 3 "$@" >"$out/check_$name.log" 2>&1
  stamp "check $name exit $?"
  grep -E "^check:|err/limit|FAIL" "$out/check_$name.log" | head -6
}
