// Planner cost on one Wan2.1-720p layer (40 heads, 1182 x 1182 blocks): mask statistics plus
// one plan, per policy and U x R, on the threads OpenMP gives (OMP_NUM_THREADS=1 for the
// single-core figures; the *_threads benchmarks set their own). Prints rho_s beside the time so a
// fast but worse plan cannot pass unnoticed. `--simd=portable|avx2|avx512` caps the instruction
// set of the counting kernels (default: the widest this CPU runs), to compare builds on one
// machine.
#include "dbsp/planner.hpp"

#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdio>
#include <memory>
#include <string_view>

#include "dbsp/workload.hpp"
#include "plan/bit_slices.hpp"

namespace {

const dbsp::BlockMask& wan_layer() {
  static const auto mask = std::make_unique<dbsp::BlockMask>(
      dbsp::SyntheticWorkload(dbsp::model_preset("wan2.1-720p"), 0).block_mask(0, 0));
  return *mask;
}

void mask_statistics(benchmark::State& state) {
  const dbsp::BlockMask& mask = wan_layer();
  for (auto _ : state) {
    dbsp::MaskStats stats(mask, 8);
    benchmark::DoNotOptimize(stats.kept());
  }
}
BENCHMARK(mask_statistics)->Unit(benchmark::kMillisecond);

void plan_layer(benchmark::State& state) {
  const dbsp::BlockMask& mask = wan_layer();
  const auto policy = static_cast<dbsp::Policy>(state.range(0));
  const dbsp::Grid grid{static_cast<int>(8 / state.range(1)), static_cast<int>(state.range(1))};
  double ratio = 0, moved = 0;
  for (auto _ : state) {
    dbsp::MaskStats stats(mask, 8);
    const dbsp::LayerPlan plan = dbsp::make_plan(stats, grid, policy);
    ratio = plan.imbalance_ratio;
    moved = plan.moved_blocks;
  }
  state.SetLabel(std::string(dbsp::to_string(policy)) + " " + grid.name());
  state.counters["rho_s"] = ratio;
  state.counters["moved"] = moved;
}
BENCHMARK(plan_layer)
    ->ArgsProduct({{int(dbsp::Policy::static_split), int(dbsp::Policy::paper),
                    int(dbsp::Policy::dbsp)},
                   {1, 2, 4, 8}})
    ->Unit(benchmark::kMillisecond);

void choose_strategy_all_grids(benchmark::State& state) {
  const dbsp::BlockMask& mask = wan_layer();
  for (auto _ : state) {
    dbsp::MaskStats stats(mask, 8);
    benchmark::DoNotOptimize(dbsp::choose_strategy(stats, dbsp::Policy::dbsp).best.imbalance_ratio);
  }
}
BENCHMARK(choose_strategy_all_grids)->Unit(benchmark::kMillisecond);

// Statistics plus every grid (choose_strategy, what `dbsp plan` reports), or only the grids that
// can win (fastest_plan, what a layer call's re-plan runs: PlanCache::plan_for), per policy, at
// P = 8, 16 and 32 ranks, on 1 or more OpenMP threads (the planner plans the grids, the statistics'
// heads and the head-summed rows' query blocks on them; 1 thread is its serial path). The counters
// check the answer: the chosen grid's rho_s and moved blocks must not change with the thread
// count, nor between the two.
template <bool kEveryGrid>
void choose_strategy_threads(benchmark::State& state) {
  const dbsp::BlockMask& mask = wan_layer();
  const auto policy = static_cast<dbsp::Policy>(state.range(0));
  const int ranks = static_cast<int>(state.range(1)), threads = static_cast<int>(state.range(2));
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  dbsp::LayerPlan best;
  for (auto _ : state) {
    dbsp::MaskStats stats(mask, ranks);
    best =
        kEveryGrid ? dbsp::choose_strategy(stats, policy).best : dbsp::fastest_plan(stats, policy);
  }
  omp_set_num_threads(saved);
  char label[96];
  std::snprintf(label, sizeof(label), "%s P%d %d thr -> %s", dbsp::to_string(policy), ranks,
                threads, best.partition.grid.name().c_str());
  state.SetLabel(label);
  state.counters["rho_s"] = best.imbalance_ratio;
  state.counters["moved"] = best.moved_blocks;
}
// Policy x P x threads, for both of the above.
void policies_ranks_threads(benchmark::internal::Benchmark* b) {
  b->ArgsProduct(
       {{int(dbsp::Policy::static_split), int(dbsp::Policy::paper), int(dbsp::Policy::dbsp)},
        {8, 16, 32},
        {1, 2}})
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}
BENCHMARK(choose_strategy_threads<true>)
    ->Name("choose_strategy_threads")
    ->Apply(policies_ranks_threads);
BENCHMARK(choose_strategy_threads<false>)
    ->Name("fastest_plan_threads")
    ->Apply(policies_ranks_threads);

// What a layer call of ours pays (PlanCache::plan_for: statistics, then the reuse check or a
// re-plan by fastest_plan, in one team of threads): P_s 0 re-plans at every call; the default P_s
// keeps the plan (the same mask again), so the call builds the statistics and scores the kept plan.
void plan_for_threads(benchmark::State& state) {
  const dbsp::BlockMask& mask = wan_layer();
  const int ranks = static_cast<int>(state.range(0)), threads = static_cast<int>(state.range(1));
  const bool replan = state.range(2) != 0;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  dbsp::PlannerOptions options;
  if (replan) options.reuse_threshold = 0;
  dbsp::PlanCache cache(1, ranks, dbsp::Policy::dbsp, options);
  cache.plan_for(0, mask);
  const int before = cache.replans();
  for (auto _ : state) benchmark::DoNotOptimize(cache.plan_for(0, mask).current_ratio);
  omp_set_num_threads(saved);
  if ((cache.replans() > before) != replan) state.SkipWithError("re-planned when it should not");
  char label[48];
  std::snprintf(label, sizeof(label), "dbsp P%d %d thr, %s", ranks, threads,
                replan ? "re-plan" : "reuse");
  state.SetLabel(label);
}
BENCHMARK(plan_for_threads)
    ->ArgsProduct({{8, 16}, {1, 2}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The statistics alone (every layer call builds them, re-plan or not), by rank and thread count.
void mask_statistics_threads(benchmark::State& state) {
  const dbsp::BlockMask& mask = wan_layer();
  const int ranks = static_cast<int>(state.range(0)), threads = static_cast<int>(state.range(1));
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  for (auto _ : state) {
    dbsp::MaskStats stats(mask, ranks);
    benchmark::DoNotOptimize(stats.kept());
  }
  omp_set_num_threads(saved);
  char label[32];
  std::snprintf(label, sizeof(label), "P%d %d thr", ranks, threads);
  state.SetLabel(label);
}
BENCHMARK(mask_statistics_threads)
    ->ArgsProduct({{8, 16}, {1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  using dbsp::plan::Simd;
  const char* names[] = {"portable", "avx2", "avx512"};
  Simd widest = Simd::avx512;
  while (widest != Simd::portable && !dbsp::plan::simd_available(widest))
    widest = static_cast<Simd>(static_cast<int>(widest) - 1);
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg.starts_with("--simd=")) {
      const std::string_view name = arg.substr(7);
      int level = 0;
      while (level < 3 && name != names[level]) ++level;
      if (level == 3 || !dbsp::plan::simd_available(static_cast<Simd>(level))) {
        std::fprintf(stderr, "bench_planner: --simd=%.*s is unknown or not on this CPU\n",
                     static_cast<int>(name.size()), name.data());
        return 2;
      }
      widest = static_cast<Simd>(level);
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  dbsp::plan::limit_simd(widest);
  benchmark::AddCustomContext("simd", names[static_cast<int>(widest)]);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
