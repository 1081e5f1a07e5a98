// The planner's view of one mask: kept blocks per (head, query segment, key segment) of the P-way
// split, from one pass over the bits. Every R dividing P has its shards on segment boundaries
// (shard_begin(c, blocks, R) == shard_begin(c * P / R, blocks, P)), so all factorizations share
// it, and any plan that keeps blocks at home is scored from it alone.
#pragma once

#include <cstdint>
#include <vector>

#include "dbsp/imbalance.hpp"
#include "dbsp/planner.hpp"
#include "plan/bit_slices.hpp"

namespace dbsp {

struct MaskStats::Data {
  const BlockMask* mask = nullptr;
  int ranks = 1;
  int stride = 0;                    // words read per row: padded_words(words_per_row)
  std::vector<int> q_segment_begin;  // [ranks + 1] query-block boundaries
  std::vector<int> k_segment_begin;  // [ranks + 1] key-block boundaries
  std::vector<int64_t> block_kept;   // [heads][ranks][ranks]: query segment x key segment
  std::vector<int64_t> kept_per_head;
  int64_t kept = 0;
  // Per head, its kept blocks per key block, still bit-sliced ([heads][column_planes][stride]):
  // plans that never ask for column masses skip turning them into integers, and the masses of a
  // head group are summed bit-sliced and turned into integers once.
  int column_planes = 1;
  std::vector<uint64_t> column_counts;
  plan::MaskRows rows;  // the mask's rows, each readable for `stride` words
  std::vector<uint64_t> padded_rows;

  const uint64_t* row(int head, int q_block) const { return rows.row(head, q_block); }
  const int64_t* blocks(int head) const {
    return block_kept.data() + static_cast<size_t>(head) * ranks * ranks;
  }
  const uint64_t* columns(int head) const {
    return column_counts.data() + static_cast<size_t>(head) * column_planes * stride;
  }
};

namespace plan {

// W[a][b] of one head group whose blocks all stay home on an R-way ring (R divides the
// statistics' rank count).
std::vector<std::vector<double>> home_work(const MaskStats::Data& stats,
                                           const std::vector<int>& heads, int ring);

// W[g][a][b] and rho_s of any partition.
ImbalanceReport evaluate(const MaskStats::Data& stats, const Partition& partition);

}  // namespace plan
}  // namespace dbsp
