// The mask summed over a set of heads, per query block: for each key block, how many of the
// set's heads keep it, bit-sliced (plane k holds bit k of the counts). One pass over the set's
// rows builds it; the balancers' row-level questions (mass per key shard, moved key blocks) and
// the work matrix of any block assignment are then answered without reading the mask again.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "plan/mask_stats.hpp"

namespace dbsp::plan {

class HeadSetRows {
 public:
  // `shard_count` > 0: also count each query block's mass per key shard, key block j lying in
  // shard key_shard[j] (what our balancer reads; one shard gives row totals).
  HeadSetRows(const MaskStats::Data& stats, std::vector<int> heads,
              const std::vector<int>& key_shard = {}, int shard_count = 0);

  const std::vector<int>& heads() const { return heads_; }
  int planes() const { return planes_; }
  // planes() counter rows of stats.stride words for query block i.
  const uint64_t* counts(int q_block) const {
    return counts_.get() + static_cast<size_t>(q_block) * planes_ * stride_;
  }
  // Kept blocks of query block i in key shard c: [i * shard_count + c]; empty without shards.
  const std::vector<int32_t>& shard_mass() const { return shard_mass_; }
  int shard_count() const { return shard_count_; }

 private:
  std::vector<int> heads_;
  int planes_ = 1;
  int stride_ = 0;
  std::unique_ptr<uint64_t[]> counts_;  // [q_blocks][planes][stride]
  int shard_count_ = 0;
  std::vector<int32_t> shard_mass_;  // [q_blocks][shard_count]
};

// A head group as disjoint head sets, so that two groupings of the same heads (ours and the
// paper's) can share one pass over the mask: each set is the intersection of one group of each.
using HeadSets = std::vector<const HeadSetRows*>;

// Per query block, mass per key shard: out[i * R + c] (the sets must have been built with the
// same R key shards).
std::vector<double> row_shard_mass(const MaskStats::Data& stats, const HeadSets& sets, int ring);

// Per query block, its kept blocks over all key blocks.
std::vector<double> row_mass(const MaskStats::Data& stats, const HeadSets& sets);

// Per key block, its kept blocks over all query blocks (from the statistics alone).
std::vector<double> column_mass(const MaskStats::Data& stats, const HeadSets& sets);
std::vector<double> column_mass(const MaskStats::Data& stats, const std::vector<int>& heads);

// Adds W[a][b] of a block assignment to `work`: per query shard, the column counts of its query
// blocks, cut by key shard.
void add_work(const MaskStats::Data& stats, const HeadSets& sets, const std::vector<int>& q_shard,
              const std::vector<int>& k_shard, int ring, std::vector<std::vector<double>>& work);

}  // namespace dbsp::plan
