// build_schedule and the schedule key.
#include "sp/schedule.hpp"

#include <bit>
#include <cstring>

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
    BlockCsr csr =
        local_block_csr(mask, route.heads, route.q_blocks, step.key_blocks, host_indices);
    schedule.step_kept[t] = csr.row_offset.back();
    if (schedule.step_kept[t] > 0) {
      schedule.step_masks[t] = std::move(csr);
      ++schedule.computing_steps;
    }
  }
  return schedule;
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

}  // namespace dbsp::sp
