// SpEmulator: every virtual rank's routing and ring steps, the steps' kernels timed one rank at a
// time, transfers charged from the link model, and the synchronous schedule that combines them.
#include <algorithm>
#include <numeric>
#include <optional>
#include <span>
#include <vector>

#include "dbsp/error.hpp"
#include "dbsp/sp_attention.hpp"
#include "sp/chunk_timeline.hpp"
#include "sp/copy_plan.hpp"
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
  std::optional<double> copy_gbytes_per_s;  // LinkModel::copy_gbytes_per_s
  // Staging copies of `rows` rows of one head of the problem.
  auto copy_time(const SpProblem& problem) {
    const int64_t row_bytes = problem.head_dim * element_bytes;
    return [this, row_bytes](int64_t rows) {
      if (!copy_gbytes_per_s) return impl->copy_ms(rows, row_bytes);
      if (*copy_gbytes_per_s == 0) return 0.0;
      return static_cast<double>(rows * row_bytes) / (*copy_gbytes_per_s * 1e6);
    };
  }
};

SpEmulator::SpEmulator(int ranks, EmulationDevice device, LinkModel link, SpOptions options)
    : ranks_(ranks), link_(link), options_(options) {
  require(ranks >= 1, "SpEmulator: rank count must be >= 1, got ", ranks);
  require(link.gbytes_per_s > 0 && link.latency_us >= 0 && link.beside_slowdown >= 0 &&
              link.copy_gbytes_per_s.value_or(0) >= 0,
          "SpEmulator: link of ", link.gbytes_per_s, " GB/s, ", link.latency_us, " us latency, ",
          link.beside_slowdown, " slowdown beside a transfer and staging copies at ",
          link.copy_gbytes_per_s.value_or(0), " GB/s");
  const bool cpu = device == EmulationDevice::cpu;
  timer_ = std::unique_ptr<Timer, void (*)(Timer*)>(
      new Timer{cpu ? sp::make_cpu_step_timer() : sp::make_device_step_timer(),
                cpu ? 4 : 2,
                cpu,
                {},
                link.copy_gbytes_per_s},
      [](Timer* timer) { delete timer; });
}

SpEmulator::~SpEmulator() = default;

namespace {

// Rows of the all-to-all in (Q, K, V) and out (O) of rank p, as sent, as received and as kept on
// the rank (copied from one of its tensors to the other, never sent), counting only the slabs
// that pass take(group, global head), `group` being the one that computes the slab's rows.
struct AllToAllRows {
  int64_t in_send = 0, in_recv = 0, in_local = 0, out_send = 0, out_recv = 0, out_local = 0;
};

template <class TakeHead>
AllToAllRows all_to_all_rows(const sp::LayerRouting& route, int p, int P, TakeHead&& take) {
  auto rows = [&](std::span<const sp::Slab> slabs, int group, bool global) {
    int64_t n = 0;
    for (const sp::Slab& slab : slabs) {
      if (take(group, global ? slab.head : route.heads[slab.head])) n += slab.rows;
    }
    return n;
  };
  AllToAllRows n;
  for (int peer = 0; peer < P; ++peer) {
    const int peer_group = ulysses_rank_of(peer, route.grid);
    const int64_t q_sent = rows(route.send_q[peer], peer_group, true);
    const int64_t kv_sent = rows(route.send_kv[peer], peer_group, true);
    if (peer == p) {
      n.in_local = q_sent + 2 * kv_sent;
      n.out_local = q_sent;
      continue;
    }
    n.in_send += q_sent + 2 * kv_sent;
    n.in_recv += rows(route.recv_q[peer], route.group, false) +
                 2 * rows(route.recv_kv[peer], route.group, false);
    n.out_send += rows(route.recv_q[peer], route.group, false);
    n.out_recv += q_sent;
  }
  return n;
}

// One all-to-all as the device executor runs it on its stream: the rank's kept rows copied and
// its sent rows packed, the exchange (the larger of sent and received on the link), the received
// rows unpacked. `cleared` rows are zero-filled first (a fill writes once where a copy reads and
// writes, so it is charged as half a copy).
template <class CopyMs>
double exchange_ms(const LinkModel& link, CopyMs&& copy_ms, int64_t row_bytes, int64_t local,
                   int64_t sent, int64_t received, int64_t cleared) {
  return copy_ms(local + sent + cleared / 2) +
         link.transfer_ms(std::max(sent, received) * row_bytes) + copy_ms(received);
}

// The schedule table of a rank's device executor: the host builds its copy lists and fills it
// into pinned memory (part of the rank's setup), the world stream uploads it.
struct TableTimes {
  double host_ms = 0;  // the copy lists' build (timed) and the pinned fill (charged)
  // Before the rank's first exchange, with a block layer's block-list kernels.
  double upload_ms = 0;
};

// The device executor's table for `schedule` (rank p of P): its copy lists (the head chunks' and
// the ring steps') are built here and timed, and the table (`data_bytes` of mask rows or key
// offsets, and the copy lists) is charged its fill and upload at the step timer's rates (measured
// on first use, outside any clock); `staged_bytes` of key lists go up in the call, through the
// staged upload, before the first exchange. Nothing on the CPU, whose executor exchanges slabs
// without a table.
TableTimes device_table(sp::StepTimer& timer, bool cpu, const sp::LayerSchedule& schedule,
                        const Partition& partition, const SpProblem& problem,
                        const SpOptions& options, int p, int P, int64_t data_bytes,
                        int64_t staged_bytes = 0) {
  if (cpu) return {};
  const sp::Stopwatch build_clock;
  const int chunks = sp::layer_head_chunks(partition.grid, options.head_chunks);
  const std::vector<sp::device::ChunkCopies> copies = sp::device::build_chunk_copies(
      schedule.route, partition, p, P, chunks, problem.heads, problem.head_dim);
  const std::vector<sp::device::StepCopies> steps =
      sp::device::build_step_copies(schedule.route, problem.head_dim);
  int64_t copy_entries = 0;
  for (const sp::device::ChunkCopies& chunk : copies) {
    for (const sp::device::CopyList* list : chunk.lists()) {
      copy_entries += static_cast<int64_t>(list->copies.size());
    }
  }
  for (const sp::device::StepCopies& step : steps) {
    copy_entries += static_cast<int64_t>(step.pack.copies.size() + step.unpack.copies.size());
  }
  const int64_t bytes =
      data_bytes + copy_entries * static_cast<int64_t>(sizeof(sp::device::RowCopy));
  const double build_ms = build_clock.elapsed_ms();
  return {build_ms + timer.table_fill_ms(bytes),
          timer.upload_ms(bytes) + timer.staged_upload_ms(staged_bytes)};
}

// The synchronous timeline of one layer on `ranks` virtual ranks, for block and fine masks alike:
// only the rank's schedule (build_schedule(p), timed as host setup), the timing of a ring step
// that launches a kernel (time_step(schedule, t, local, merge, reserved_sms)) and of a rank's
// head-chunk kernels (time_chunks(schedule, local, chunk_heads, reserved_sms): StepTimer's
// ChunkTimes for the chunks' global heads) differ. Staging copies
// are charged by copy_ms(rows) (the executor's copy kernel, timed by the step timer), and the
// schedule table by table(schedule, p) (TableTimes: the host's part joins the rank's setup, the
// upload runs on the world stream before the first exchange).
template <class BuildSchedule, class TimeStep, class TimeChunks, class CopyMs, class Table>
EmulatedLayer emulate_layer(int ranks, const LinkModel& link, const SpOptions& options,
                            int64_t element_bytes, const SpProblem& problem,
                            const Partition& partition, BuildSchedule&& build_schedule,
                            TimeStep&& time_step, TimeChunks&& time_chunks, CopyMs&& copy_ms,
                            Table&& table) {
  const Grid grid = partition.grid;
  const int P = ranks, R = grid.ring;
  const int64_t row_bytes = problem.head_dim * element_bytes;
  // Head chunks, as the device executor cuts them (grids without a ring only): the input chunk
  // of each head (which exchange brings it, which kernel computes it) and its output chunk.
  const int chunks = sp::layer_head_chunks(grid, options.head_chunks);
  const sp::HeadChunks head_chunks(partition, chunks);
  EmulatedLayer layer;
  layer.grid = grid;
  layer.rank_compute_ms.assign(P, 0.0);
  layer.rank_step_kept.assign(P, {});
  std::vector<std::vector<double>> compute(P, std::vector<double>(R, 0.0));
  std::vector<std::vector<double>> transfer(P, std::vector<double>(R, 0.0));  // brings step t
  // Pipelined head chunks: per rank and input chunk the kernel's time, and per output chunk the
  // input chunk its all-to-all waits for; per chunk the slowest rank's all-to-all in and out.
  std::vector<std::vector<double>> chunk_compute(P, std::vector<double>(chunks, 0.0));
  std::vector<std::vector<double>> chunk_queued(P, std::vector<double>(chunks, 0.0));
  std::vector<std::vector<int>> out_waits_for(P, std::vector<int>(chunks, -1));
  std::vector<double> chunk_in_ms(chunks, 0.0), chunk_out_ms(chunks, 0.0);
  double in_ms = 0, out_ms = 0;
  for (int p = 0; p < P; ++p) {
    // The rank's host setup, as its executor builds it (routing and step masks), timed here.
    const sp::Stopwatch setup_clock;
    const sp::LayerSchedule& schedule = build_schedule(p);  // a kept one or a temporary
    const double schedule_ms = setup_clock.elapsed_ms();
    const TableTimes table_times = table(schedule, p);
    layer.setup_ms = std::max(layer.setup_ms, schedule_ms + table_times.host_ms);
    const sp::LayerRouting& route = schedule.route;
    // A rank whose local tensors are its inputs computes in place: it copies no local rows and
    // clears nothing (sp::local_is_input, as both executors decide).
    const bool in_place = chunks == 1 && sp::local_is_input(route, problem.heads);
    const AllToAllRows whole = all_to_all_rows(route, p, P, [](int, int) { return true; });
    const int64_t q_rows = route.q_local.tokens() * static_cast<int64_t>(route.heads.size());
    const int64_t out_rows = route.q_input.tokens() * problem.heads;
    const double upload = table_times.upload_ms;
    in_ms = std::max(
        in_ms,
        upload + exchange_ms(link, copy_ms, row_bytes, in_place ? 0 : whole.in_local, whole.in_send,
                             whole.in_recv, route.clear_local_q && !in_place ? q_rows : 0));
    out_ms = std::max(out_ms, exchange_ms(link, copy_ms, row_bytes, in_place ? 0 : whole.out_local,
                                          whole.out_send, whole.out_recv, in_place ? 0 : out_rows));
    layer.bytes_moved += route.rows_sent * row_bytes;
    layer.bytes_saved += (route.baseline_rows_sent - route.rows_sent) * row_bytes;

    bool first = true;
    for (int t = 0; t < R; ++t) {
      const sp::RingStep& step = route.steps[t];
      if (t > 0) {
        const int64_t sent = 2 * sp::slab_rows(step.send);
        const int64_t received = 2 * sp::slab_rows(step.recv);
        transfer[p][t] = exchange_ms(link, copy_ms, row_bytes, 0, sent, received, 0);
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
        // The rank's chunk kernels, timed alone and queued as the executor queues them. Every
        // chunk's kernel runs beside another chunk's all-to-all (when there is one).
        std::vector<std::vector<int>> chunk_heads;
        std::vector<int> chunk_of;  // the chunk of each non-empty entry
        for (int c = 0; c < chunks; ++c) {
          std::vector<int> heads;
          for (int h : route.heads) {
            if (head_chunks.in_of(route.group, h) == c) heads.push_back(h);
          }
          if (heads.empty()) continue;
          chunk_heads.push_back(std::move(heads));
          chunk_of.push_back(c);
        }
        const sp::StepTimer::ChunkTimes times =
            time_chunks(schedule, local, chunk_heads, P > 1 ? options.ring_reserved_sms : 0);
        const double slowdown = P > 1 ? 1.0 + link.beside_slowdown : 1.0;
        double previous_end = 0;
        for (size_t i = 0; i < chunk_of.size(); ++i) {
          const int c = chunk_of[i];
          chunk_compute[p][c] = times.alone_ms[i] * slowdown;
          chunk_queued[p][c] = (times.end_ms[i] - previous_end) * slowdown;
          previous_end = std::max(previous_end, times.end_ms[i]);
        }
        compute[p][t] = previous_end * slowdown;
        continue;
      }
      // The next step's transfer runs beside this one on the SMs the kernel leaves free.
      const bool transfer_beside =
          t + 1 < R && (!route.steps[t + 1].send.empty() || !route.steps[t + 1].recv.empty());
      compute[p][t] =
          time_step(schedule, t, local, !first, transfer_beside ? options.ring_reserved_sms : 0);
      if (transfer_beside) compute[p][t] *= 1.0 + link.beside_slowdown;
      first = false;
    }
    layer.rank_compute_ms[p] = std::accumulate(compute[p].begin(), compute[p].end(), 0.0);
    layer.rank_step_kept[p] = schedule.step_kept;
    for (int c = 0; c < chunks && chunks > 1; ++c) {
      // Chunked layers never run in place; the executor clears the local Q and the output once,
      // before the first chunk's exchange of each direction.
      const AllToAllRows in_part = all_to_all_rows(
          route, p, P, [&](int group, int head) { return head_chunks.in_of(group, head) == c; });
      const AllToAllRows out_part = all_to_all_rows(
          route, p, P, [&](int group, int head) { return head_chunks.out_of(group, head) == c; });
      chunk_in_ms[c] =
          std::max(chunk_in_ms[c],
                   (c == 0 ? upload : 0.0) +
                       exchange_ms(link, copy_ms, row_bytes, in_part.in_local, in_part.in_send,
                                   in_part.in_recv, c == 0 && route.clear_local_q ? q_rows : 0));
      chunk_out_ms[c] =
          std::max(chunk_out_ms[c],
                   exchange_ms(link, copy_ms, row_bytes, out_part.out_local, out_part.out_send,
                               out_part.out_recv, c == 0 ? out_rows : 0));
      out_waits_for[p][c] = head_chunks.out_waits_for(route.group, route.heads, c);
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
    const sp::ChunkTimeline timeline =
        sp::chunk_timeline(chunk_in_ms, chunk_out_ms, chunk_compute, out_waits_for, chunk_queued);
    // Reported as the compute path (ring_ms) and the all-to-all left exposed beside it.
    layer.ring_ms = max_compute;
    layer.all_to_all_ms = timeline.finished - max_compute;
    layer.chunk_in_ms = chunk_in_ms;
    layer.chunk_out_ms = chunk_out_ms;
    layer.chunk_out_start_ms = timeline.out_start;
    layer.chunk_out_after_rank = timeline.out_waited_for;
  }
  layer.total_ms = layer.setup_ms + layer.all_to_all_ms + layer.ring_ms;
  layer.rank_step_ms = std::move(compute);
  return layer;
}

// A rank's head-chunk kernels timed as the executor queues them. `list(heads, rows)` gives a
// chunk's local mask (a BlockCsr or a LocalFineMask), which lives in `listed` while the timer
// runs; `kernel_of(mask)` points a kernel at it.
template <class Listed, class List, class KernelOf>
sp::StepTimer::ChunkTimes time_chunk_kernels(sp::StepTimer& timer, const sp::LayerRouting& route,
                                             const AttentionProblem& local,
                                             const std::vector<std::vector<int>>& chunk_heads,
                                             int reserved_sms, const SpOptions& options,
                                             List&& list, KernelOf&& kernel_of) {
  std::vector<Listed> listed;
  listed.reserve(chunk_heads.size());  // kernels point into it: no reallocation
  std::vector<sp::StepTimer::ChunkKernel> kernels;
  for (const std::vector<int>& heads : chunk_heads) {
    listed.push_back(list(heads, sp::head_rows_of(route, heads)));
    sp::StepTimer::ChunkKernel kernel = kernel_of(listed.back());
    kernel.local = local;
    kernel.local.heads = static_cast<int64_t>(heads.size());
    kernel.split_min_blocks =
        sp::split_chunk_rows(options, heads.size(), kernels.size() + 1 == chunk_heads.size())
            ? options.min_split_blocks
            : 0;
    kernels.push_back(kernel);
  }
  return timer.chunk_times(kernels, reserved_sms);
}

}  // namespace

double SpEmulator::staging_gbytes_per_s(const SpProblem& problem) {
  constexpr int64_t kRows = int64_t{1} << 22;  // large enough for a launch's fixed cost to vanish
  const double ms = timer_->copy_time(problem)(kRows);
  return ms > 0 ? static_cast<double>(kRows * problem.head_dim * timer_->element_bytes) / (ms * 1e6)
                : 0.0;
}

EmulatedLayer SpEmulator::run(const SpProblem& problem, const BlockMask& mask,
                              const Partition& partition) {
  sp::check_layer(ranks_, problem, mask, partition);
  Timer& timer = *timer_;
  // The split floor the step's kernel gets (sp::split_step_rows; 0: whole rows).
  auto split_min_blocks = [&](const sp::LayerSchedule& schedule, int t) {
    return sp::split_step_rows(options_, schedule.route.heads.size(),
                               schedule.route.steps[t].key_blocks.size())
               ? options_.min_split_blocks
               : 0;
  };
  return emulate_layer(
      ranks_, link_, options_, timer.element_bytes, problem, partition,
      [&](int p) {
        return sp::build_schedule(mask, partition, problem, p, options_.mask_aware,
                                  timer.host_indices);
      },
      [&](const sp::LayerSchedule& schedule, int t, const AttentionProblem& local, bool merge,
          int reserved_sms) {
        const int block_q = problem.geometry.block_q, block_k = problem.geometry.block_k;
        if (timer.host_indices) {
          return timer.impl->step_ms(local, schedule.step_masks[t], block_q, block_k, merge,
                                     reserved_sms, split_min_blocks(schedule, t));
        }
        // The device schedule leaves the key indices to the GPU; the timer needs them listed.
        const sp::LayerRouting& route = schedule.route;
        const BlockCsr listed = sp::local_block_csr(
            mask, route.heads, route.q_blocks, route.steps[t].key_blocks, true, &route.head_rows);
        return timer.impl->step_ms(local, listed, block_q, block_k, merge, reserved_sms,
                                   split_min_blocks(schedule, t));
      },
      [&](const sp::LayerSchedule& schedule, const AttentionProblem& local,
          const std::vector<std::vector<int>>& chunk_heads, int reserved_sms) {
        const sp::LayerRouting& route = schedule.route;
        return time_chunk_kernels<BlockCsr>(
            *timer.impl, route, local, chunk_heads, reserved_sms, options_,
            [&](const std::vector<int>& heads, const std::vector<BlockRange>& rows) {
              return sp::local_block_csr(mask, heads, route.q_blocks, route.steps[0].key_blocks,
                                         true, &rows);
            },
            [&](const BlockCsr& listed) {
              return sp::StepTimer::ChunkKernel{local, &listed, nullptr, problem.geometry.block_q,
                                                problem.geometry.block_k};
            });
      },
      timer.copy_time(problem),
      [&](const sp::LayerSchedule& schedule, int p) {
        // Most of a block layer's table: the rank's mask rows, from which the GPU lists blocks.
        const sp::LayerRouting& route = schedule.route;
        const int64_t rows = schedule.computing_steps == 0
                                 ? 0
                                 : static_cast<int64_t>(route.heads.size() * route.q_blocks.size());
        TableTimes times =
            device_table(*timer.impl, timer.host_indices, schedule, partition, problem, options_, p,
                         ranks_, rows * mask.words_per_row() * 8);
        // Then the block-list kernel of each computing step, on the world stream (none for a
        // step that keeps no block: block_indices_ms is 0 there).
        if (!timer.host_indices) {
          for (const int64_t kept : schedule.step_kept) {
            times.upload_ms += timer.impl->block_indices_ms(rows, mask.words_per_row(), kept);
          }
        }
        return times;
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
          int reserved_sms) {
        return timer.impl->fine_step_ms(local, schedule.fine_step_masks[t], merge, reserved_sms);
      },
      [&](const sp::LayerSchedule& schedule, const AttentionProblem& local,
          const std::vector<std::vector<int>>& chunk_heads, int reserved_sms) {
        const sp::LayerRouting& route = schedule.route;
        return time_chunk_kernels<sp::LocalFineMask>(
            *timer.impl, route, local, chunk_heads, reserved_sms, options_,
            [&](const std::vector<int>& heads, const std::vector<BlockRange>& rows) {
              return sp::local_fine_mask(mask, heads, route.q_blocks, route.steps[0].key_blocks,
                                         route.steps[0].key_layout, &rows);
            },
            [&](const sp::LocalFineMask& listed) {
              return sp::StepTimer::ChunkKernel{local, nullptr, &listed.mask,
                                                problem.geometry.block_q, problem.geometry.block_k};
            });
      },
      timer.copy_time(problem),
      [&](const sp::LayerSchedule& schedule, int p) {
        // Most of a fine layer's table: every computing step's key offsets; its key lists go
        // up as they are, staged.
        int64_t bytes = 0, staged = 0;
        for (size_t t = 0; t < schedule.fine_step_masks.size(); ++t) {
          if (schedule.step_kept[t] == 0) continue;
          const FineMask& local = schedule.fine_step_masks[t];
          bytes += static_cast<int64_t>(local.row_offset().size() * sizeof(int64_t));
          staged += static_cast<int64_t>(local.key_index().size() * sizeof(int32_t));
        }
        return device_table(*timer.impl, timer.host_indices, schedule, partition, problem, options_,
                            p, ranks_, bytes, staged);
      });
}

}  // namespace dbsp
