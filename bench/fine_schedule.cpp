// Host cost of a fine (FG-Attn) layer schedule on one Wan2.1-720p layer (40 heads, 75600 tokens,
// blocks of 64, --fine-keep 0.3 as `dbsp run` thins it): the fine mask's construction, its
// covering blocks, and per partition rank 0's routing, local fine masks and whole schedule,
// beside the block-mask schedule of the covering blocks (the peer: what a block layer pays).
// Threads: OMP_NUM_THREADS. Each schedule is checked against the one built the reference way.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include "dbsp/fine_mask.hpp"
#include "dbsp/imbalance.hpp"
#include "dbsp/planner.hpp"
#include "dbsp/sp_attention.hpp"
#include "dbsp/workload.hpp"
#include "sp/local_fine_mask.hpp"
#include "sp/schedule.hpp"

namespace {

using dbsp::BlockMask;
using dbsp::FineMask;
using dbsp::Partition;

struct Layer {
  BlockMask block;
  FineMask fine;
  BlockMask covering;
  dbsp::SpProblem problem;
};

// `dbsp run --workload wan2.1-720p --fine-keep 0.3` (seed 0), step 0, layer 0.
const Layer& wan_layer() {
  static const auto layer = [] {
    auto out = std::make_unique<Layer>();
    out->block = dbsp::SyntheticWorkload(dbsp::model_preset("wan2.1-720p"), 0).block_mask(0, 0);
    out->fine = dbsp::thin_blocks(out->block, 0.3, 2u);
    out->covering = out->fine.covering_blocks();
    out->problem.heads = out->block.heads();
    out->problem.head_dim = 128;
    out->problem.geometry = out->block.geometry();
    std::printf(
        "wan2.1-720p layer: %d heads, %d x %d blocks, block density %.4f, %lld M x 1 "
        "slices (density %.4f), fine mask hash %016llx\n",
        out->block.heads(), out->block.q_blocks(), out->block.k_blocks(), out->block.density(),
        static_cast<long long>(out->fine.kept()), out->fine.density(),
        static_cast<unsigned long long>(dbsp::mask_hash(out->fine)));
    return out;
  }();
  return *layer;
}

// Arguments: ring degree R of a U x R grid on 8 ranks, policy (0: contiguous split, 1: db-SP).
const Partition& partition_for(int ring, int policy) {
  static std::unique_ptr<Partition> cache[9][2];
  std::unique_ptr<Partition>& slot = cache[ring][policy];
  if (!slot) {
    const Layer& layer = wan_layer();
    const dbsp::Grid grid{8 / ring, ring};
    if (policy == 0) {
      slot = std::make_unique<Partition>(Partition::contiguous(
          grid, layer.block.heads(), layer.block.q_blocks(), layer.block.k_blocks()));
    } else {
      const dbsp::MaskStats stats(layer.covering, 8);
      slot =
          std::make_unique<Partition>(dbsp::make_plan(stats, grid, dbsp::Policy::dbsp).partition);
    }
  }
  return *slot;
}

std::string label(const benchmark::State& state) {
  const int ring = static_cast<int>(state.range(0));
  return std::string(state.range(1) ? "dbsp " : "static ") + "U" + std::to_string(8 / ring) + "R" +
         std::to_string(ring);
}

void thin_blocks(benchmark::State& state) {
  const Layer& layer = wan_layer();
  for (auto _ : state) benchmark::DoNotOptimize(dbsp::thin_blocks(layer.block, 0.3, 2u).kept());
}
BENCHMARK(thin_blocks)->Unit(benchmark::kMillisecond)->UseRealTime();

// The constructor's validation alone (the copies it is handed are made outside the timing).
void fine_mask_constructor(benchmark::State& state) {
  const Layer& layer = wan_layer();
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<int64_t> offsets = layer.fine.row_offset();
    std::vector<int32_t> keys = layer.fine.key_index();
    state.ResumeTiming();
    const FineMask mask(layer.fine.heads(), layer.fine.geometry(), std::move(offsets),
                        std::move(keys));
    benchmark::DoNotOptimize(mask.kept());
  }
}
BENCHMARK(fine_mask_constructor)->Unit(benchmark::kMillisecond)->UseRealTime();

void covering_blocks(benchmark::State& state) {
  const Layer& layer = wan_layer();
  for (auto _ : state) {
    const BlockMask covering = layer.fine.covering_blocks();
    if (!(covering == layer.covering)) state.SkipWithError("covering blocks differ");
  }
}
BENCHMARK(covering_blocks)->Unit(benchmark::kMillisecond)->UseRealTime();

// What SpAttention's fine forward also reads every layer: the mask's hash (the cross-rank check)
// and rho_s of its slices under the partition used, on 1 or 2 OpenMP threads. The peers are the
// previous serial versions: one multiply-xorshift chain over every offset and key pair, and one
// fp64 add per key; the rho_s benchmarks check that their work tensors are equal bit for bit.
void set_threads_label(benchmark::State& state, int threads, const char* what) {
  state.SetLabel(std::string(what) + " " + std::to_string(threads) + " thr");
}

void mask_hash_threads(benchmark::State& state) {
  const Layer& layer = wan_layer();
  const int threads = static_cast<int>(state.range(0));
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  uint64_t hash = 0;
  for (auto _ : state) benchmark::DoNotOptimize(hash = dbsp::mask_hash(layer.fine));
  omp_set_num_threads(saved);
  if (hash != dbsp::mask_hash(layer.fine)) state.SkipWithError("hash depends on the threads");
  set_threads_label(state, threads, "chunked");
}
BENCHMARK(mask_hash_threads)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

uint64_t one_chain_hash(const FineMask& mask) {
  uint64_t hash = 0x9e3779b97f4a7c15ull;
  auto mix = [&](uint64_t value) {
    hash = (hash ^ value) * 0xbf58476d1ce4e5b9ull;
    hash ^= hash >> 31;
  };
  for (int64_t offset : mask.row_offset()) mix(static_cast<uint64_t>(offset));
  const std::vector<int32_t>& keys = mask.key_index();
  for (size_t e = 0; e + 1 < keys.size(); e += 2) {
    mix(static_cast<uint32_t>(keys[e]) | uint64_t{static_cast<uint32_t>(keys[e + 1])} << 32);
  }
  return hash;
}

void mask_hash_one_chain(benchmark::State& state) {
  const Layer& layer = wan_layer();
  for (auto _ : state) benchmark::DoNotOptimize(one_chain_hash(layer.fine));
  state.SetLabel("previous, serial");
}
BENCHMARK(mask_hash_one_chain)->Unit(benchmark::kMillisecond)->UseRealTime();

// One fp64 add per kept key (exact here: block_q 64 makes every slice cost a multiple of 1/64).
dbsp::ImbalanceReport per_key_imbalance(const FineMask& mask, const Partition& partition) {
  const dbsp::MaskGeometry& geo = mask.geometry();
  std::vector<std::vector<std::vector<double>>> work(
      partition.grid.ulysses, std::vector<std::vector<double>>(
                                  partition.grid.ring, std::vector<double>(partition.grid.ring)));
  for (int h = 0; h < mask.heads(); ++h) {
    const int g = partition.head_group[h];
    for (int i = 0; i < geo.q_blocks(); ++i) {
      const double slice_cost =
          double(std::min<int64_t>(geo.block_q, geo.seq_q - int64_t{i} * geo.block_q)) /
          geo.block_q;
      auto& out = work[g][partition.q_shard[g][i]];
      for (int32_t key : mask.keys(h, i)) {
        out[partition.k_shard[g][key / geo.block_k]] += slice_cost;
      }
    }
  }
  return dbsp::imbalance_from_work(partition.grid, std::move(work));
}

// Arguments: ring degree, policy (as partition_for), threads.
void fine_imbalance_ratio(benchmark::State& state) {
  const Layer& layer = wan_layer();
  const Partition& partition = partition_for(state.range(0), state.range(1));
  const int threads = static_cast<int>(state.range(2));
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  dbsp::ImbalanceReport report;
  for (auto _ : state)
    benchmark::DoNotOptimize((report = dbsp::imbalance_report(layer.fine, partition)).ratio);
  omp_set_num_threads(saved);
  const dbsp::ImbalanceReport reference = per_key_imbalance(layer.fine, partition);
  if (report.work != reference.work || report.ratio != reference.ratio) {
    state.SkipWithError("rho_s differs from one add per key");
  }
  set_threads_label(state, threads, label(state).c_str());
  state.counters["rho_s"] = report.ratio;
}
BENCHMARK(fine_imbalance_ratio)
    ->ArgsProduct({{1, 8}, {0, 1}, {1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void fine_imbalance_per_key(benchmark::State& state) {
  const Layer& layer = wan_layer();
  const Partition& partition = partition_for(state.range(0), state.range(1));
  for (auto _ : state) benchmark::DoNotOptimize(per_key_imbalance(layer.fine, partition).ratio);
  state.SetLabel(label(state) + " previous, serial");
}
BENCHMARK(fine_imbalance_per_key)
    ->ArgsProduct({{1, 8}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

#define PARTITIONS ArgsProduct({{1, 2, 8}, {0, 1}})->Unit(benchmark::kMillisecond)->UseRealTime()

void routing(benchmark::State& state) {
  const Layer& layer = wan_layer();
  const Partition& partition = partition_for(state.range(0), state.range(1));
  for (auto _ : state) {
    const dbsp::sp::LayerRouting route = dbsp::sp::build_routing(
        layer.covering, partition, layer.problem.q_layout(), layer.problem.k_layout(), 0, true);
    benchmark::DoNotOptimize(route.rows_sent);
  }
  state.SetLabel(label(state));
}
BENCHMARK(routing)->PARTITIONS;

// Every ring step's local fine mask of rank 0.
void local_fine_masks(benchmark::State& state) {
  const Layer& layer = wan_layer();
  const Partition& partition = partition_for(state.range(0), state.range(1));
  const dbsp::sp::LayerRouting route = dbsp::sp::build_routing(
      layer.covering, partition, layer.problem.q_layout(), layer.problem.k_layout(), 0, true);
  int64_t keys = 0;
  for (auto _ : state) {
    keys = 0;
    for (const dbsp::sp::LocalFineMask& local :
         dbsp::sp::local_fine_masks(layer.fine, route.heads, route.q_blocks, route.steps)) {
      keys += local.mask.kept();
    }
  }
  state.SetLabel(label(state));
  state.counters["Mkeys"] = keys * 1e-6;
}
BENCHMARK(local_fine_masks)->PARTITIONS;

void fine_schedule(benchmark::State& state) {
  const Layer& layer = wan_layer();
  const Partition& partition = partition_for(state.range(0), state.range(1));
  for (auto _ : state) {
    const dbsp::sp::LayerSchedule schedule =
        dbsp::sp::build_fine_schedule(layer.fine, partition, layer.problem, 0, true);
    benchmark::DoNotOptimize(schedule.computing_steps);
  }
  state.SetLabel(label(state));
}
BENCHMARK(fine_schedule)->PARTITIONS;

// The same built into a kept schedule, as SpExecutor's schedule slots do from the second layer
// call on: the step masks reuse the previous build's memory instead of touching fresh pages.
void fine_schedule_into_kept(benchmark::State& state) {
  const Layer& layer = wan_layer();
  const Partition& partition = partition_for(state.range(0), state.range(1));
  const dbsp::sp::LayerSchedule reference =
      dbsp::sp::build_fine_schedule(layer.fine, partition, layer.problem, 0, true);
  dbsp::sp::LayerSchedule schedule;
  dbsp::sp::build_fine_schedule(schedule, layer.fine, partition, layer.problem, 0, true);
  for (auto _ : state) {
    dbsp::sp::build_fine_schedule(schedule, layer.fine, partition, layer.problem, 0, true);
  }
  if (schedule.fine_step_masks != reference.fine_step_masks ||
      schedule.step_kept != reference.step_kept) {
    state.SkipWithError("the schedule built into a kept one differs");
  }
  state.SetLabel(label(state));
}
BENCHMARK(fine_schedule_into_kept)->PARTITIONS;

// The peer: the block-mask schedule of the covering blocks.
void block_schedule(benchmark::State& state) {
  const Layer& layer = wan_layer();
  const Partition& partition = partition_for(state.range(0), state.range(1));
  for (auto _ : state) {
    const dbsp::sp::LayerSchedule schedule =
        dbsp::sp::build_schedule(layer.covering, partition, layer.problem, 0, true);
    benchmark::DoNotOptimize(schedule.computing_steps);
  }
  state.SetLabel(label(state));
}
BENCHMARK(block_schedule)->PARTITIONS;

}  // namespace

BENCHMARK_MAIN();
