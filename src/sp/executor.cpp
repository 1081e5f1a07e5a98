// SpExecutor: the three phases of one layer (all-to-all-v in, ring with LSE merge, all-to-all-v
// out) on host buffers, with telemetry, for block and fine masks alike (one body; only the step's
// kernel differs). Routing comes from sp/routing.cpp.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>

#include "dbsp/attention.hpp"
#include "dbsp/error.hpp"
#include "dbsp/sp_attention.hpp"
#include "sp/non_finite.hpp"
#include "sp/phases.hpp"
#include "sp/routing.hpp"
#include "sp/schedule.hpp"
#include "sp/stopwatch.hpp"

namespace dbsp {

using sp::Slab;

SequenceShard sequence_shard(const BlockLayout& layout, int rank, int ranks) {
  require(ranks >= 1 && rank >= 0 && rank < ranks, "sequence_shard: rank ", rank, " of ", ranks);
  SequenceShard shard;
  shard.first_block = shard_begin(rank, layout.blocks(), ranks);
  shard.end_block = shard_begin(rank + 1, layout.blocks(), ranks);
  shard.first_token = layout.start[shard.first_block];
  shard.end_token = layout.start[shard.end_block];
  return shard;
}

// Buffers kept between calls so that steady-state layers do not allocate.
struct SpExecutor::HostSchedules {
  sp::ScheduleSlots<sp::LayerSchedule> slots;
};

struct SpExecutor::Workspace {
  std::vector<float> q, k, v, out, lse, part_out, part_lse;
  std::vector<float> step_k, step_v;  // K/V of the current ring step (> 0)
  sp::Staging all_to_all, ring;
};

namespace {

template <class T>
void resize_at_least(std::vector<T>& buffer, int64_t elements) {
  if (static_cast<int64_t>(buffer.size()) < elements) buffer.resize(static_cast<size_t>(elements));
}

}  // namespace

SpExecutor::SpExecutor(Communicator& world, SpOptions options)
    : world_(world),
      options_(options),
      workspace_(std::make_unique<Workspace>()),
      host_schedules_(std::make_unique<HostSchedules>()),
      prebuilt_(std::make_unique<sp::PrebuiltSchedules>()) {
  require(options_.min_split_blocks >= 2,
          "SpOptions::min_split_blocks: a split row needs at least 2 key blocks, got ",
          options_.min_split_blocks);
}

SpExecutor::~SpExecutor() = default;

GridCommunicators& SpExecutor::grid_communicators(Grid grid) {
  for (auto& [known, comms] : grids_) {
    if (known == grid) return *comms;
  }
  grids_.emplace_back(grid,
                      std::make_unique<GridCommunicators>(GridCommunicators::build(world_, grid)));
  return *grids_.back().second;
}

void SpExecutor::prepare(std::span<const Grid> grids) {
  for (Grid grid : grids) grid_communicators(grid);
  if (!options_.connect_peers) return;
  // A plan may move blocks between any two ranks through the world's all-to-alls, while a ring
  // step only talks to its neighbours: connect those pairs now rather than in a layer call.
  std::vector<int> everyone(static_cast<size_t>(world_.size()));
  std::iota(everyone.begin(), everyone.end(), 0);
  world_.connect(everyone, "connecting the world's ranks");
  for (Grid grid : grids) {
    Communicator& ring = *grid_communicators(grid).ring;
    const int neighbours[] = {(ring.rank() + 1) % ring.size(),
                              (ring.rank() + ring.size() - 1) % ring.size()};
    ring.connect(neighbours, "connecting ring neighbours of grid " + grid.name());
  }
}

double SpExecutor::close_layer(std::array<int64_t, 2> first_non_finite) {
  const sp::Stopwatch clock;
  std::vector<std::array<int64_t, 2>> by_rank;
  if (options_.measure_idle) {
    by_rank = world_.all_gather(first_non_finite, "sp closing barrier");
  } else {
    // Without the barrier this rank can only name itself.
    by_rank.assign(static_cast<size_t>(world_.size()), {-1, -1});
    by_rank[static_cast<size_t>(world_.rank())] = first_non_finite;
  }
  const double idle_ms = options_.measure_idle ? clock.elapsed_ms() : 0.0;
  const std::string error = sp::non_finite_outputs_error(by_rank);
  require(error.empty(), error);
  return idle_ms;
}

namespace {

// One ring step's partial attention on the local tensors, with the step's block or fine mask.
void attend_step(const sp::LayerSchedule& schedule, int t, const AttentionProblem& local,
                 const float* q, const float* k, const float* v, float* out, float* lse) {
  if (schedule.fine()) {
    attention_fine<float>(local, schedule.fine_step_masks[t], q, k, v, out, lse);
  } else {
    attention_block_sparse<float>(local, schedule.step_masks[t], q, k, v, out, lse);
  }
}

}  // namespace

template <class BuildSchedule>
SpTelemetry SpExecutor::run_host(const SpProblem& problem, const Partition& partition,
                                 const float* q, const float* k, const float* v, float* out,
                                 ScheduleReuse reuse, BuildSchedule&& build_schedule) {
  sp::Stopwatch total_clock;
  sp::Stopwatch clock;
  SpTelemetry telemetry;
  telemetry.grid = partition.grid;

  GridCommunicators& comms = grid_communicators(partition.grid);
  // Routing and the local mask of every ring step, built (or reused) before any transfer so that
  // the ring loop only computes.
  bool reused = false;
  sp::LayerSchedule& schedule =
      host_schedules_->slots.lookup(reuse, sp::schedule_key(reuse, problem), reused);
  if (!reused) build_schedule(schedule);
  telemetry.schedule_reused = reused;
  const sp::LayerRouting& route = schedule.route;
  const std::vector<int64_t>& step_kept = schedule.step_kept;
  const int64_t D = problem.head_dim;
  const int64_t H = problem.heads;
  const int64_t Hg = static_cast<int64_t>(route.heads.size());
  const int64_t tq = route.q_local.tokens();
  const int64_t tk = route.k_local.tokens();
  const int R = partition.grid.ring;
  telemetry.setup_ms = clock.lap_ms();

  Workspace& ws = *workspace_;
  // A rank whose local tensors are its inputs computes on the caller's buffers: it has no slab to
  // send or receive in the all-to-alls (sp::local_is_input), so it takes part in them without its
  // local slabs, and O accumulates in place. Not when O shares memory with Q, K or V.
  const bool in_place =
      sp::local_is_input(route, static_cast<int>(H)) &&
      sp::output_apart_from_inputs(route, static_cast<int>(H),
                                   D * static_cast<int64_t>(sizeof(float)), q, k, v, out);
  if (!in_place) {
    resize_at_least(ws.q, tq * Hg * D);
    resize_at_least(ws.k, tk * Hg * D);
    resize_at_least(ws.v, tk * Hg * D);
    resize_at_least(ws.out, tq * Hg * D);
    if (route.clear_local_q) std::fill_n(ws.q.begin(), tq * Hg * D, 0.0f);
  }
  resize_at_least(ws.lse, tq * Hg);
  const float* q_local = in_place ? q : ws.q.data();
  const float* k_local = in_place ? k : ws.k.data();
  const float* v_local = in_place ? v : ws.v.data();
  float* out_local = in_place ? out : ws.out.data();

  double comm_ms = 0, wait_ms = 0;
  auto account = [&](const sp::SlabExchange& exchange) {
    comm_ms += exchange.pack_ms() + exchange.unpack_ms();
    wait_ms += exchange.wait_ms();
  };

  // (a) Q, K, V to the ranks the partition assigns.
  clock.lap_ms();
  {
    sp::SlabExchange in =
        sp::start_input_exchange(world_, route, H, D, q, k, v, ws.q.data(), ws.k.data(),
                                 ws.v.data(), ws.all_to_all, /*local_slabs=*/!in_place);
    in.finish();
    account(in);
  }

  // (b) Ring: the transfer for step t + 1 is posted before step t computes.
  int64_t step_tokens = 0;
  for (int t = 1; t < R; ++t) {
    step_tokens = std::max(step_tokens, route.steps[t].key_layout.tokens());
  }
  resize_at_least(ws.step_k, step_tokens * Hg * D);
  resize_at_least(ws.step_v, step_tokens * Hg * D);
  std::fill_n(out_local, tq * Hg * D, 0.0f);
  std::fill_n(ws.lse.begin(), tq * Hg, -std::numeric_limits<float>::infinity());
  if (R > 1) {
    resize_at_least(ws.part_out, tq * Hg * D);
    resize_at_least(ws.part_lse, tq * Hg);
  }
  bool have_partial = false;
  double compute_ms = 0;
  clock.lap_ms();
  for (int t = 0; t < R; ++t) {
    std::optional<sp::SlabExchange> next;
    if (t + 1 < R) {
      next.emplace(sp::start_ring_exchange(*comms.ring, route, t + 1, D, k_local, v_local,
                                           ws.step_k.data(), ws.step_v.data(), ws.ring));
    }
    clock.lap_ms();
    if (step_kept[t] > 0) {
      AttentionProblem local;
      local.batch = 1;
      local.heads = Hg;
      local.head_dim = D;
      local.q_layout = route.q_local;
      local.k_layout = route.steps[t].key_layout;
      local.scale = problem.scale;
      const float* step_k = t == 0 ? k_local : ws.step_k.data();
      const float* step_v = t == 0 ? v_local : ws.step_v.data();
      if (!have_partial) {
        attend_step(schedule, t, local, q_local, step_k, step_v, out_local, ws.lse.data());
        have_partial = true;
      } else {
        attend_step(schedule, t, local, q_local, step_k, step_v, ws.part_out.data(),
                    ws.part_lse.data());
        merge_partial<float>(1, tq, Hg, D, out_local, ws.lse.data(), ws.part_out.data(),
                             ws.part_lse.data());
      }
      ++telemetry.ring_steps_computed;
      telemetry.kept_blocks += step_kept[t];
    } else {
      ++telemetry.ring_steps_skipped;
    }
    compute_ms += clock.lap_ms();
    if (next) {
      next->finish();
      account(*next);
    }
    clock.lap_ms();
  }

  // (c) O back to the input shards; rows that no key reaches stay zero (in place: every row was
  // zeroed before the ring and holds its result now).
  const int64_t out_elements = route.q_input.tokens() * H * D;
  if (out_elements > 0 && !in_place) std::fill_n(out, out_elements, 0.0f);
  {
    sp::SlabExchange back = sp::start_output_exchange(world_, route, H, D, out_local, out,
                                                      ws.all_to_all, /*local_slabs=*/!in_place);
    back.finish();
    account(back);
  }
  const int64_t out_first =
      options_.check_finite ? sp::first_non_finite(out, route.q_input.tokens() * H * D) : -1;
  telemetry.idle_ms = close_layer(sp::output_place(out_first, route.q_input.first_token, H, D));
  telemetry.compute_ms = compute_ms;
  telemetry.wait_ms = wait_ms;
  telemetry.comm_ms = comm_ms + wait_ms;
  const int64_t row_bytes = D * static_cast<int64_t>(sizeof(float));
  telemetry.bytes_sent = route.rows_sent * row_bytes;
  telemetry.bytes_received = route.rows_received * row_bytes;
  telemetry.bytes_saved = (route.baseline_rows_sent - route.rows_sent) * row_bytes;
  telemetry.total_ms = total_clock.elapsed_ms();
  return telemetry;
}

SpTelemetry SpExecutor::run(const SpProblem& problem, const BlockMask& mask,
                            const Partition& partition, const float* q, const float* k,
                            const float* v, float* out, ScheduleReuse reuse) {
  require(world_.memory() == MemorySpace::host, "SpExecutor::run takes host buffers; the ",
          world_.backend(), " communicator moves device memory (use run_device_bf16)");
  sp::check_layer(world_.size(), problem, mask, partition);
  return run_host(problem, partition, q, k, v, out, reuse, [&](sp::LayerSchedule& schedule) {
    std::optional<sp::LayerSchedule> ready =
        prebuilt_->take(reuse.slot, sp::schedule_key(reuse, problem), /*with_indices=*/true);
    schedule =
        ready ? std::move(*ready)
              : sp::build_schedule(mask, partition, problem, world_.rank(), options_.mask_aware);
  });
}

void SpExecutor::prebuild_schedule(const SpProblem& problem, const BlockMask& mask,
                                   const Partition& partition, ScheduleReuse reuse, bool device) {
  if (reuse.slot < 0) return;
  sp::check_layer(world_.size(), problem, mask, partition);
  // The device path lists key blocks on the GPU; the host path needs them listed here.
  prebuilt_->put(reuse.slot, sp::schedule_key(reuse, problem), !device,
                 sp::build_schedule(mask, partition, problem, world_.rank(), options_.mask_aware,
                                    /*host_indices=*/!device));
}

SpTelemetry SpExecutor::run(const SpProblem& problem, const FineMask& mask,
                            const Partition& partition, const float* q, const float* k,
                            const float* v, float* out, ScheduleReuse reuse) {
  require(world_.memory() == MemorySpace::host,
          "SpExecutor::run with a fine mask takes host buffers; the ", world_.backend(),
          " communicator moves device memory (fine masks run on the host path only)");
  sp::check_fine_layer(world_.size(), problem, mask, partition);
  reuse = sp::fine_reuse(reuse);
  return run_host(problem, partition, q, k, v, out, reuse, [&](sp::LayerSchedule& schedule) {
    std::optional<sp::LayerSchedule> ready =
        prebuilt_->take(reuse.slot, sp::schedule_key(reuse, problem), /*with_indices=*/false);
    if (ready) {
      prebuilt_->keep_spare(std::move(schedule));  // its memory serves the next build ahead
      schedule = std::move(*ready);
      return;
    }
    // Into the slot's recycled schedule: the new step masks take over the old ones' memory.
    sp::build_fine_schedule(schedule, mask, partition, problem, world_.rank(), options_.mask_aware);
  });
}

void SpExecutor::prebuild_schedule(const SpProblem& problem, const FineMask& mask,
                                   const Partition& partition, ScheduleReuse reuse) {
  if (reuse.slot < 0) return;
  sp::check_fine_layer(world_.size(), problem, mask, partition);
  reuse = sp::fine_reuse(reuse);
  // Host and device runs use the same fine schedule (key lists, no block lists).
  sp::LayerSchedule schedule = prebuilt_->spare();
  sp::build_fine_schedule(schedule, mask, partition, problem, world_.rank(), options_.mask_aware);
  prebuilt_->put(reuse.slot, sp::schedule_key(reuse, problem), /*with_indices=*/false,
                 std::move(schedule));
}

}  // namespace dbsp
