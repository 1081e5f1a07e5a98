// A layer's schedule on one rank: the routing plus the local mask of every ring step (block CSR
// lists, or fine key lists for a fine mask). Built from (mask, partition, problem); executors keep
// it per slot and reuse it while the caller's key (a fingerprint of plan and mask) is unchanged.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "dbsp/block_mask.hpp"
#include "dbsp/fine_mask.hpp"
#include "dbsp/partition.hpp"
#include "dbsp/sp_attention.hpp"
#include "mask/fine_mask_parts.hpp"
#include "sp/routing.hpp"

namespace dbsp::sp {

struct LayerSchedule {
  LayerRouting route;
  std::vector<BlockCsr> step_masks;  // per ring step; empty when the step keeps no block
  std::vector<int64_t> step_kept;    // kept blocks per step (fine: blocks holding a kept key)
  int computing_steps = 0;           // steps with at least one kept block
  // Fine masks only (build_fine_schedule): per ring step the kept keys of this rank's rows, as
  // tokens of the step's K/V buffer; step_masks then stay empty.
  std::vector<FineMask> fine_step_masks;
  // A recycled schedule's fine step masks' lists: the memory the next fine build fills.
  std::vector<detail::FineMaskLists> spare_fine_lists;
  bool fine() const { return !fine_step_masks.empty(); }
  // Clears the schedule, keeping its fine masks' memory for the next build (ScheduleSlots hands
  // back recycled entries; build_fine_schedule into one takes the memory over).
  void recycle();
};

// host_indices false: the step masks carry counts and offsets only (the device builds kv_index).
LayerSchedule build_schedule(const BlockMask& mask, const Partition& partition,
                             const SpProblem& problem, int rank, bool mask_aware,
                             bool host_indices = true);

// A fine mask's schedule: routing and data movement from mask.covering_blocks() (a K/V block
// moves iff some receiving query keeps a key of it; the mask found them when it was built), the
// steps' local fine masks from local_fine_masks (two passes over this rank's rows' keys).
LayerSchedule build_fine_schedule(const FineMask& mask, const Partition& partition,
                                  const SpProblem& problem, int rank, bool mask_aware);
// The same into `schedule` (recycled first), reusing the memory of its fine step masks: at video
// sizes touching fresh pages for the key lists costs more than the rest of the build.
void build_fine_schedule(LayerSchedule& schedule, const FineMask& mask, const Partition& partition,
                         const SpProblem& problem, int rank, bool mask_aware);

// Throws unless the problem, the fine mask and the partition describe the same layer on `ranks`
// ranks (a fine mask's keys are tokens, so its geometry must be the problem's exactly).
void check_fine_layer(int ranks, const SpProblem& problem, const FineMask& mask,
                      const Partition& partition);

// The key under which a schedule is kept: the caller's key mixed with what the caller's
// fingerprint does not cover (head_dim and scale shape the buffers, not the routing).
uint64_t schedule_key(const ScheduleReuse& reuse, const SpProblem& problem);
// A fine mask's run keeps its schedule under another key than a block mask's run with the same
// reuse, so that neither ever answers for the other.
inline ScheduleReuse fine_reuse(ScheduleReuse reuse) {
  reuse.key ^= 0xf1e2d3c4b5a69788ull;
  return reuse;
}

// Per-slot cache of T (a schedule, or a schedule with its device tables). A slot whose key
// changed is handed back cleared by T::recycle() when T has one (device buffers then survive the
// change: freeing and allocating them each layer and step costs more than building the schedule),
// else rebuilt from scratch.
template <class T>
class ScheduleSlots {
 public:
  // The entry for `reuse` when its key matches (hit = true), else a cleared entry to fill
  // (slot -1: a scratch entry that is never reused).
  T& lookup(const ScheduleReuse& reuse, uint64_t key, bool& hit) {
    std::unique_ptr<T>* entry = &scratch_;
    if (reuse.slot >= 0) {
      if (static_cast<int>(slots_.size()) <= reuse.slot) slots_.resize(reuse.slot + 1);
      entry = &slots_[reuse.slot];
    }
    hit = *entry && reuse.slot >= 0 && keys_.size() > static_cast<size_t>(reuse.slot) &&
          keys_[reuse.slot] == key;
    if (!hit) {
      if constexpr (requires(T & t) { t.recycle(); }) {
        if (*entry) {
          (*entry)->recycle();
        } else {
          *entry = std::make_unique<T>();
        }
      } else {
        *entry = std::make_unique<T>();
      }
      if (reuse.slot >= 0) {
        if (keys_.size() <= static_cast<size_t>(reuse.slot)) keys_.resize(reuse.slot + 1, 0);
        keys_[reuse.slot] = key;
      }
    }
    return **entry;
  }

 private:
  std::vector<std::unique_ptr<T>> slots_;
  std::vector<uint64_t> keys_;
  std::unique_ptr<T> scratch_;
};

// Host schedules built ahead of their layer (SpExecutor::prebuild_schedule, typically on another
// thread while an earlier layer runs), each waiting for the run of its slot and key. Thread-safe.
class PrebuiltSchedules {
 public:
  // Replaces whatever waited for `slot`.
  void put(int slot, uint64_t key, bool with_indices, LayerSchedule schedule);
  // The schedule put for (slot, key, with_indices), if any; the slot is emptied either way, so a
  // stale schedule (another key) never outlives the run that did not use it.
  std::optional<LayerSchedule> take(int slot, uint64_t key, bool with_indices);
  // Fine schedules' memory goes round: a run that takes a prebuilt schedule hands back the one its
  // slot held (keep_spare recycles it), and the next build ahead fills it (spare) instead of
  // touching fresh pages for its key lists. A few are kept; spare() without one gives an empty one.
  void keep_spare(LayerSchedule spent);
  LayerSchedule spare();

 private:
  struct Entry {
    int slot = -1;
    uint64_t key = 0;
    bool with_indices = false;
    LayerSchedule schedule;
  };
  std::mutex mutex_;
  std::vector<Entry> entries_;         // at most one per slot
  std::vector<LayerSchedule> spares_;  // recycled, holding only their fine lists' memory
};

}  // namespace dbsp::sp
