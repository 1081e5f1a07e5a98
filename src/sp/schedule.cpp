// build_schedule (block and fine masks) and the schedule key.
#include "sp/schedule.hpp"

#include <bit>
#include <cstring>

#include "dbsp/error.hpp"
#include "sp/local_fine_mask.hpp"

namespace dbsp::sp {

LayerSchedule build_schedule(const BlockMask& mask, const Partition& partition,
                             const SpProblem& problem, int rank, bool mask_aware,
                             bool host_indices) {
  LayerSchedule schedule;
  schedule.route =
      build_routing(mask, partition, problem.q_layout(), problem.k_layout(), rank, mask_aware);
  const LayerRouting& route = schedule.route;
  const int R = partition.grid.ring;
  schedule.step_masks.resize(static_cast<size_t>(R));
  schedule.step_kept.assign(static_cast<size_t>(R), 0);
  for (int t = 0; t < R; ++t) {
    const RingStep& step = route.steps[t];
    if (route.heads.empty() || route.q_blocks.empty() || step.key_blocks.empty()) continue;
    BlockCsr csr = local_block_csr(mask, route.heads, route.q_blocks, step.key_blocks, host_indices,
                                   &route.head_rows);
    schedule.step_kept[t] = csr.row_offset.back();
    if (schedule.step_kept[t] > 0) {
      schedule.step_masks[t] = std::move(csr);
      ++schedule.computing_steps;
    }
  }
  return schedule;
}

void LayerSchedule::recycle() {
  for (FineMask& local : fine_step_masks) {
    spare_fine_lists.push_back(detail::FineMaskParts::release(std::move(local)));
  }
  std::vector<detail::FineMaskLists> spare = std::move(spare_fine_lists);
  *this = LayerSchedule{};
  spare_fine_lists = std::move(spare);
}

LayerSchedule build_fine_schedule(const FineMask& mask, const Partition& partition,
                                  const SpProblem& problem, int rank, bool mask_aware) {
  LayerSchedule schedule;
  build_fine_schedule(schedule, mask, partition, problem, rank, mask_aware);
  return schedule;
}

void build_fine_schedule(LayerSchedule& schedule, const FineMask& mask, const Partition& partition,
                         const SpProblem& problem, int rank, bool mask_aware) {
  schedule.recycle();
  schedule.route = build_routing(mask.covering_blocks(), partition, problem.q_layout(),
                                 problem.k_layout(), rank, mask_aware);
  const LayerRouting& route = schedule.route;
  const int R = partition.grid.ring;
  schedule.step_kept.assign(static_cast<size_t>(R), 0);
  schedule.fine_step_masks.reserve(static_cast<size_t>(R));
  for (LocalFineMask& local : local_fine_masks(mask, route.heads, route.q_blocks, route.steps,
                                               &schedule.spare_fine_lists, &route.head_rows)) {
    // Equal to the covering mask's local CSR count: a block counts iff a kept key lies in it.
    schedule.step_kept[schedule.fine_step_masks.size()] = local.blocks;
    if (local.blocks > 0) ++schedule.computing_steps;
    schedule.fine_step_masks.push_back(std::move(local.mask));
  }
}

void check_fine_layer(int ranks, const SpProblem& problem, const FineMask& mask,
                      const Partition& partition) {
  const MaskGeometry& p = problem.geometry;
  const MaskGeometry& m = mask.geometry();
  require(problem.heads == mask.heads() && p == m, "sequence parallel layer: problem has ",
          problem.heads, " heads, ", p.seq_q, " x ", p.seq_k, " tokens in blocks of ", p.block_q,
          " x ", p.block_k, "; the fine mask has ", mask.heads(), " heads, ", m.seq_q, " x ",
          m.seq_k, " in blocks of ", m.block_q, " x ", m.block_k);
  require(partition.grid.ranks() == ranks, "sequence parallel layer: partition grid ",
          partition.grid.name(), " needs ", partition.grid.ranks(), " ranks; the communicator has ",
          ranks);
  require(problem.head_dim >= 1, "sequence parallel layer: head_dim must be >= 1, got ",
          problem.head_dim);
  partition.validate();
}

uint64_t schedule_key(const ScheduleReuse& reuse, const SpProblem& problem) {
  uint64_t scale_bits = 0;
  std::memcpy(&scale_bits, &problem.scale, sizeof(scale_bits));
  uint64_t key = reuse.key;
  for (uint64_t value : {static_cast<uint64_t>(problem.head_dim), scale_bits}) {
    key = (key ^ value) * 0xbf58476d1ce4e5b9ull;
    key ^= key >> 31;
  }
  return key;
}

void PrebuiltSchedules::put(int slot, uint64_t key, bool with_indices, LayerSchedule schedule) {
  const std::lock_guard<std::mutex> lock(mutex_);
  std::erase_if(entries_, [&](const Entry& e) { return e.slot == slot; });
  entries_.push_back({slot, key, with_indices, std::move(schedule)});
}

void PrebuiltSchedules::keep_spare(LayerSchedule spent) {
  // Two are enough: one being filled ahead while the other waits for its run.
  constexpr size_t kMostSpares = 2;
  if (spent.fine_step_masks.empty() && spent.spare_fine_lists.empty()) return;
  spent.recycle();
  const std::lock_guard<std::mutex> lock(mutex_);
  if (spares_.size() < kMostSpares) spares_.push_back(std::move(spent));
}

LayerSchedule PrebuiltSchedules::spare() {
  const std::lock_guard<std::mutex> lock(mutex_);
  if (spares_.empty()) return {};
  LayerSchedule spare = std::move(spares_.back());
  spares_.pop_back();
  return spare;
}

std::optional<LayerSchedule> PrebuiltSchedules::take(int slot, uint64_t key, bool with_indices) {
  const std::lock_guard<std::mutex> lock(mutex_);
  std::optional<LayerSchedule> found;
  for (Entry& e : entries_) {
    if (e.slot == slot && e.key == key && e.with_indices == with_indices) {
      found = std::move(e.schedule);
    }
  }
  std::erase_if(entries_, [&](const Entry& e) { return e.slot == slot; });
  return found;
}

}  // namespace dbsp::sp
