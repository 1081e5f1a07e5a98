// The planner's view of one mask: kept blocks per (head, query block, home key segment) of the
// P-way split, from one pass over the bits. Every R dividing P has its key shards on segment
// boundaries (shard_begin(c, kb, R) == shard_begin(c * P / R, kb, P)), so all factorizations share
// it.
#pragma once

#include <cstdint>
#include <vector>

#include "dbsp/imbalance.hpp"
#include "dbsp/planner.hpp"

namespace dbsp {

struct MaskStats::Data {
  const BlockMask* mask = nullptr;
  int ranks = 1;
  std::vector<int> segment_begin;     // [ranks + 1] key-block boundaries
  std::vector<int32_t> segment_kept;  // [heads][q_blocks][ranks]
  std::vector<int64_t> kept_per_head;
  int64_t kept = 0;

  const int32_t* segments(int head, int q_block) const {
    return segment_kept.data() + (static_cast<size_t>(head) * mask->q_blocks() + q_block) * ranks;
  }
};

namespace plan {

// Row mass of one head group per home key shard of an R-way ring: out[i * R + c].
std::vector<double> group_row_shard_mass(const MaskStats::Data& stats,
                                         const std::vector<int>& heads, int ring);

// Moves the mass of key blocks that left their home shard (k_shard != home) into their new
// shard, by testing their bits: cost grows with the moved blocks only.
void apply_key_moves(const MaskStats::Data& stats, const std::vector<int>& heads,
                     const std::vector<int>& k_shard, int ring, std::vector<double>& row_mass);

// W[g][a][b] and rho_s of any partition, using the statistics (fast when few key blocks move).
ImbalanceReport evaluate(const MaskStats::Data& stats, const Partition& partition);

}  // namespace plan
}  // namespace dbsp
