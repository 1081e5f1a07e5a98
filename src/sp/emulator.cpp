// SpEmulator: every virtual rank's routing and ring steps, the steps' kernels timed one rank at a
// time, transfers charged from the link model, and the synchronous schedule that combines them.
#include <algorithm>
#include <numeric>
#include <span>
#include <vector>

#include "dbsp/error.hpp"
#include "dbsp/sp_attention.hpp"
#include "sp/head_chunks.hpp"
#include "sp/local_fine_mask.hpp"
#include "sp/routing.hpp"
#include "sp/schedule.hpp"
#include "sp/step_timer.hpp"
#include "sp/stopwatch.hpp"

namespace dbsp {

double LinkModel::transfer_ms(int64_t bytes) const {
  if (bytes <= 0) return 0;
  return latency_us * 1e-3 + static_cast<double>(bytes) / (gbytes_per_s * 1e6);
}

struct SpEmulator::Timer {
  std::unique_ptr<sp::StepTimer> impl;
  int64_t element_bytes;
  bool host_indices;  // the CPU executor lists key blocks on the host, the device path on the GPU
  // Per run slot and virtual rank, the fine schedule that rank's executor keeps in its slot and
  // rebuilds into (reusing the key lists' memory), so setup is charged as a running rank pays it.
  std::vector<std::vector<sp::LayerSchedule>> fine_schedules;
};

SpEmulator::SpEmulator(int ranks, EmulationDevice device, LinkModel link, SpOptions options)
    : ranks_(ranks), link_(link), options_(options) {
  require(ranks >= 1, "SpEmulator: rank count must be >= 1, got ", ranks);
  require(link.gbytes_per_s > 0 && link.latency_us >= 0 && link.beside_slowdown >= 0,
          "SpEmulator: link of ", link.gbytes_per_s, " GB/s, ", link.latency_us, " us latency and ",
          link.beside_slowdown, " slowdown beside a transfer");
  const bool cpu = device == EmulationDevice::cpu;
  timer_ = std::unique_ptr<Timer, void (*)(Timer*)>(
      new Timer{
          cpu ? sp::make_cpu_step_timer() : sp::make_device_step_timer(), cpu ? 4 : 2, cpu, {}},
      [](Timer* timer) { delete timer; });
}

SpEmulator::~SpEmulator() = default;

namespace {

// Rows of the all-to-all in (Q, K, V) and out (O) of rank p, as sent and as received, counting
// only the slabs whose global head passes `take`.
struct AllToAllRows {
  int64_t in = 0, out = 0;  // the larger of sent and received, in each direction of the layer
};

template <class TakeHead>
AllToAllRows all_to_all_rows(const sp::LayerRouting& route, int p, int P, TakeHead&& take) {
  auto rows = [&](std::span<const sp::Slab> slabs, bool global) {
    int64_t n = 0;
    for (const sp::Slab& slab : slabs) {
      if (take(global ? slab.head : route.heads[slab.head])) n += slab.rows;
    }
    return n;
  };
  int64_t in_send = 0, in_recv = 0, out_send = 0, out_recv = 0;
  for (int peer = 0; peer < P; ++peer) {
    if (peer == p) continue;
    in_send += rows(route.send_q[peer], true) + 2 * rows(route.send_kv[peer], true);
    in_recv += rows(route.recv_q[peer], false) + 2 * rows(route.recv_kv[peer], false);
    out_send += rows(route.recv_q[peer], false);
    out_recv += rows(route.send_q[peer], true);
  }
  return {std::max(in_send, in_recv), std::max(out_send, out_recv)};
}

// The synchronous timeline of one layer on `ranks` virtual ranks, for block and fine masks alike:
// only the rank's schedule (build_schedule(p), timed as host setup) and the timing of a ring step
// that launches a kernel (time_step(schedule, t, local, merge, reserved_sms, chunk_heads), where
// chunk_heads, when not null, names the global heads of one head chunk) differ.
template <class BuildSchedule, class TimeStep>
EmulatedLayer emulate_layer(int ranks, const LinkModel& link, const SpOptions& options,
                            int64_t element_bytes, const SpProblem& problem,
                            const Partition& partition, BuildSchedule&& build_schedule,
                            TimeStep&& time_step) {
  const Grid grid = partition.grid;
  const int P = ranks, R = grid.ring;
  const int64_t row_bytes = problem.head_dim * element_bytes;
  // Head chunks, as the device executor cuts them (grids without a ring only): chunk c of a group
  // holds its heads [head_chunk_begin(c), head_chunk_begin(c + 1)) in the group's order.
  const int chunks = sp::layer_head_chunks(grid.ulysses, R, options.head_chunks);
  std::vector<int> chunk_of(static_cast<size_t>(problem.heads), 0);
  if (chunks > 1) {
    for (int g = 0; g < grid.ulysses; ++g) {
      const std::vector<int> heads = partition.heads_of(g);
      const int n = static_cast<int>(heads.size());
      for (int c = 0; c < chunks; ++c) {
        for (int l = sp::head_chunk_begin(c, n, chunks); l < sp::head_chunk_begin(c + 1, n, chunks);
             ++l) {
          chunk_of[heads[l]] = c;
        }
      }
    }
  }
  EmulatedLayer layer;
  layer.grid = grid;
  layer.rank_compute_ms.assign(P, 0.0);
  std::vector<std::vector<double>> compute(P, std::vector<double>(R, 0.0));
  std::vector<std::vector<double>> transfer(P, std::vector<double>(R, 0.0));  // brings step t
  // Pipelined head chunks: per rank and chunk the kernel's time; per chunk the slowest rank's
  // all-to-all in and out.
  std::vector<std::vector<double>> chunk_compute(P, std::vector<double>(chunks, 0.0));
  std::vector<double> chunk_in_ms(chunks, 0.0), chunk_out_ms(chunks, 0.0);
  double in_ms = 0, out_ms = 0;
  for (int p = 0; p < P; ++p) {
    // The rank's host setup, as its executor builds it (routing and step masks), timed here.
    const sp::Stopwatch setup_clock;
    const sp::LayerSchedule& schedule = build_schedule(p);  // a kept one or a temporary
    layer.setup_ms = std::max(layer.setup_ms, setup_clock.elapsed_ms());
    const sp::LayerRouting& route = schedule.route;
    const AllToAllRows whole = all_to_all_rows(route, p, P, [](int) { return true; });
    in_ms = std::max(in_ms, link.transfer_ms(whole.in * row_bytes));
    out_ms = std::max(out_ms, link.transfer_ms(whole.out * row_bytes));
    layer.bytes_moved += route.rows_sent * row_bytes;
    layer.bytes_saved += (route.baseline_rows_sent - route.rows_sent) * row_bytes;

    bool first = true;
    for (int t = 0; t < R; ++t) {
      const sp::RingStep& step = route.steps[t];
      if (t > 0) {
        transfer[p][t] = link.transfer_ms(
            2 * std::max(sp::slab_rows(step.send), sp::slab_rows(step.recv)) * row_bytes);
      }
      if (route.heads.empty() || route.q_blocks.empty() || step.key_blocks.empty()) continue;
      if (schedule.step_kept[t] == 0) continue;  // no kernel for an empty step
      AttentionProblem local;
      local.heads = static_cast<int64_t>(route.heads.size());
      local.head_dim = problem.head_dim;
      local.q_layout = route.q_local;
      local.k_layout = step.key_layout;
      local.scale = problem.scale;
      if (chunks > 1) {
        // Every chunk's kernel runs beside another chunk's all-to-all (when there is one).
        for (int c = 0; c < chunks; ++c) {
          std::vector<int> heads;
          for (int h : route.heads) {
            if (chunk_of[h] == c) heads.push_back(h);
          }
          if (heads.empty()) continue;
          local.heads = static_cast<int64_t>(heads.size());
          chunk_compute[p][c] =
              time_step(schedule, t, local, false, P > 1 ? options.ring_reserved_sms : 0, &heads);
          if (P > 1) chunk_compute[p][c] *= 1.0 + link.beside_slowdown;
          compute[p][t] += chunk_compute[p][c];
        }
        continue;
      }
      // The next step's transfer runs beside this one on the SMs the kernel leaves free.
      const bool transfer_beside =
          t + 1 < R && (!route.steps[t + 1].send.empty() || !route.steps[t + 1].recv.empty());
      compute[p][t] = time_step(schedule, t, local, !first,
                                transfer_beside ? options.ring_reserved_sms : 0, nullptr);
      if (transfer_beside) compute[p][t] *= 1.0 + link.beside_slowdown;
      first = false;
    }
    layer.rank_compute_ms[p] = std::accumulate(compute[p].begin(), compute[p].end(), 0.0);
    for (int c = 0; c < chunks && chunks > 1; ++c) {
      const AllToAllRows part =
          all_to_all_rows(route, p, P, [&](int head) { return chunk_of[head] == c; });
      chunk_in_ms[c] = std::max(chunk_in_ms[c], link.transfer_ms(part.in * row_bytes));
      chunk_out_ms[c] = std::max(chunk_out_ms[c], link.transfer_ms(part.out * row_bytes));
    }
  }

  // The ring of head group g: step t lasts as long as its slowest rank's compute of step t or
  // transfer of step t + 1 (posted before step t computes).
  double ring_compute_max = 0;
  for (int g = 0; g < grid.ulysses; ++g) {
    double group_ms = 0, group_compute = 0;
    for (int t = 0; t < R; ++t) {
      double step_ms = 0, step_compute = 0;
      for (int r = 0; r < R; ++r) {
        const int p = grid_rank(g, r, grid);
        const double next = t + 1 < R ? transfer[p][t + 1] : 0.0;
        step_ms = std::max({step_ms, compute[p][t], next});
        step_compute = std::max(step_compute, compute[p][t]);
      }
      group_ms += step_ms;
      group_compute += step_compute;
    }
    layer.ring_ms = std::max(layer.ring_ms, group_ms);
    ring_compute_max = std::max(ring_compute_max, group_compute);
  }
  const double total_compute =
      std::accumulate(layer.rank_compute_ms.begin(), layer.rank_compute_ms.end(), 0.0);
  const double mean = total_compute / P;
  const double max_compute =
      *std::max_element(layer.rank_compute_ms.begin(), layer.rank_compute_ms.end());
  layer.measured_ratio = mean > 0 ? max_compute / mean : 1.0;
  layer.ring_ratio = mean > 0 ? ring_compute_max / mean : 1.0;
  layer.all_to_all_ms = in_ms + out_ms;
  if (chunks > 1) {
    // The executor posts every chunk's input exchange in turn on one stream, then each chunk's
    // output as soon as that chunk is computed everywhere; a rank computes chunk c once its
    // inputs have arrived and its chunk c - 1 is done.
    std::vector<double> rank_done(P, 0.0);
    double arrived = 0, computed = 0;
    std::vector<double> computed_at(chunks, 0.0);
    for (int c = 0; c < chunks; ++c) {
      arrived += chunk_in_ms[c];
      computed = 0;
      for (int p = 0; p < P; ++p) {
        rank_done[p] = std::max(rank_done[p], arrived) + chunk_compute[p][c];
        computed = std::max(computed, rank_done[p]);
      }
      computed_at[c] = computed;
    }
    double returned = arrived;  // outputs queue behind every input exchange
    for (int c = 0; c < chunks; ++c)
      returned = std::max(returned, computed_at[c]) + chunk_out_ms[c];
    // Reported as the compute path (ring_ms) and the all-to-all left exposed beside it.
    layer.ring_ms = max_compute;
    layer.all_to_all_ms = std::max(returned, computed) - max_compute;
  }
  layer.total_ms = layer.setup_ms + layer.all_to_all_ms + layer.ring_ms;
  return layer;
}

}  // namespace

EmulatedLayer SpEmulator::run(const SpProblem& problem, const BlockMask& mask,
                              const Partition& partition) {
  sp::check_layer(ranks_, problem, mask, partition);
  Timer& timer = *timer_;
  return emulate_layer(
      ranks_, link_, options_, timer.element_bytes, problem, partition,
      [&](int p) {
        return sp::build_schedule(mask, partition, problem, p, options_.mask_aware,
                                  timer.host_indices);
      },
      [&](const sp::LayerSchedule& schedule, int t, const AttentionProblem& local, bool merge,
          int reserved_sms, const std::vector<int>* chunk_heads) {
        const int block_q = problem.geometry.block_q, block_k = problem.geometry.block_k;
        if (timer.host_indices && chunk_heads == nullptr) {
          return timer.impl->step_ms(local, schedule.step_masks[t], block_q, block_k, merge,
                                     reserved_sms);
        }
        // The device schedule leaves the key indices to the GPU; the timer needs them listed.
        const sp::LayerRouting& route = schedule.route;
        const BlockCsr listed = sp::local_block_csr(mask, chunk_heads ? *chunk_heads : route.heads,
                                                    route.q_blocks, route.steps[t].key_blocks);
        return timer.impl->step_ms(local, listed, block_q, block_k, merge, reserved_sms);
      });
}

EmulatedLayer SpEmulator::run(const SpProblem& problem, const FineMask& mask,
                              const Partition& partition, int run_slot) {
  sp::check_fine_layer(ranks_, problem, mask, partition);
  require(run_slot >= 0, "SpEmulator::run: run slot must be >= 0, got ", run_slot);
  Timer& timer = *timer_;
  if (static_cast<int>(timer.fine_schedules.size()) <= run_slot) {
    timer.fine_schedules.resize(static_cast<size_t>(run_slot) + 1);
  }
  std::vector<sp::LayerSchedule>& kept_by_rank = timer.fine_schedules[run_slot];
  kept_by_rank.resize(static_cast<size_t>(ranks_));
  // Routing and bytes follow the covering blocks (build_fine_schedule); each step's kernel runs
  // the rank's local fine mask, as SpExecutor's fine run does.
  return emulate_layer(
      ranks_, link_, options_, timer.element_bytes, problem, partition,
      [&](int p) -> const sp::LayerSchedule& {
        sp::LayerSchedule& kept = kept_by_rank[p];
        sp::build_fine_schedule(kept, mask, partition, problem, p, options_.mask_aware);
        return kept;
      },
      [&](const sp::LayerSchedule& schedule, int t, const AttentionProblem& local, bool merge,
          int reserved_sms, const std::vector<int>* chunk_heads) {
        if (chunk_heads == nullptr) {
          return timer.impl->fine_step_ms(local, schedule.fine_step_masks[t], merge, reserved_sms);
        }
        const sp::LayerRouting& route = schedule.route;
        const sp::LocalFineMask chunk =
            sp::local_fine_mask(mask, *chunk_heads, route.q_blocks, route.steps[t].key_blocks,
                                route.steps[t].key_layout);
        return timer.impl->fine_step_ms(local, chunk.mask, merge, reserved_sms);
      });
}

}  // namespace dbsp
