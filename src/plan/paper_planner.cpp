// The paper's dual-level partition (db-SP, Sec. 4): heads by the greedy of head_balance, blocks by
// a greedy whose home shard counts `reward` x the block's weight less than its load.
#include "plan/paper_planner.hpp"

#include <algorithm>
#include <limits>
#include <numeric>

#include "dbsp/block_layout.hpp"
#include "plan/head_balance.hpp"
#include "plan/heaviest_first.hpp"
#include "plan/home_shards.hpp"

namespace dbsp::plan {
namespace {

std::vector<int> biased_greedy(const std::vector<double>& weight, int parts, double reward) {
  const int n = static_cast<int>(weight.size());
  const std::vector<int> order = heaviest_first(weight);
  std::vector<int> shard(n), count(parts, 0), capacity(parts);
  std::vector<double> load(parts, 0.0);
  for (int p = 0; p < parts; ++p)
    capacity[p] = shard_begin(p + 1, n, parts) - shard_begin(p, n, parts);
  const std::vector<int> home_of = home_shards(n, parts);
  for (int idx : order) {
    const int home = home_of[idx];
    // The first part of least score among those with room (full parts score +inf), without
    // branches: the comparisons are unpredictable.
    int best = 0;
    double best_score = std::numeric_limits<double>::infinity();
    for (int p = 0; p < parts; ++p) {
      const double score = count[p] >= capacity[p]
                               ? std::numeric_limits<double>::infinity()
                               : load[p] - (p == home ? reward * weight[idx] : 0.0);
      const bool better = score < best_score;
      best = better ? p : best;
      best_score = better ? score : best_score;
    }
    shard[idx] = best;
    load[best] += weight[idx];
    ++count[best];
  }
  return shard;
}

}  // namespace

std::vector<int> paper_head_assignment(const MaskStats::Data& stats, int ulysses) {
  return ulysses > 1 ? paper_head_groups(stats.kept_per_head, ulysses)
                     : std::vector<int>(stats.kept_per_head.size(), 0);
}

Partition paper_key_partition(const MaskStats::Data& stats, Grid grid, double reward) {
  const BlockMask& mask = *stats.mask;
  Partition p = Partition::contiguous(grid, mask.heads(), mask.q_blocks(), mask.k_blocks());
  p.head_group = paper_head_assignment(stats, grid.ulysses);
  if (grid.ring == 1) return p;
  std::vector<int> heads(mask.heads());
  std::iota(heads.begin(), heads.end(), 0);
  p.k_shard.assign(grid.ulysses, biased_greedy(column_mass(stats, heads), grid.ring, reward));
  return p;
}

void paper_place_queries(const MaskStats::Data& stats, double reward, const HeadSets& all_heads,
                         Partition& partition) {
  const Grid grid = partition.grid;
  if (grid.ring == 1) return;
  partition.q_shard.assign(grid.ulysses,
                           biased_greedy(row_mass(stats, all_heads), grid.ring, reward));
}

Partition paper_partition(const MaskStats::Data& stats, Grid grid, double reward,
                          const HeadSets& all_heads) {
  Partition p = paper_key_partition(stats, grid, reward);
  paper_place_queries(stats, reward, all_heads, p);
  return p;
}

}  // namespace dbsp::plan
