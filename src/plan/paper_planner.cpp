// The paper's dual-level partition (db-SP, Sec. 4): heads by the greedy of head_balance, blocks by
// a greedy whose home shard counts `reward` x the block's weight less than its load.
#include "plan/paper_planner.hpp"

#include <algorithm>
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
    int best = -1;
    double best_score = 0;
    for (int p = 0; p < parts; ++p) {
      if (count[p] >= capacity[p]) continue;
      const double score = load[p] - (p == home ? reward * weight[idx] : 0.0);
      if (best < 0 || score < best_score) best = p, best_score = score;
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

Partition paper_partition(const MaskStats::Data& stats, Grid grid, double reward,
                          const HeadSets& all_heads) {
  const BlockMask& mask = *stats.mask;
  const int H = mask.heads(), QB = mask.q_blocks(), KB = mask.k_blocks();
  Partition p = Partition::contiguous(grid, H, QB, KB);
  p.head_group = paper_head_assignment(stats, grid.ulysses);
  if (grid.ring == 1) return p;
  const std::vector<double> row_sum = row_mass(stats, all_heads);
  const std::vector<double> col_sum = column_mass(stats, all_heads);
  const std::vector<int> q_shard = biased_greedy(row_sum, grid.ring, reward);
  const std::vector<int> k_shard = biased_greedy(col_sum, grid.ring, reward);
  p.q_shard.assign(grid.ulysses, q_shard);
  p.k_shard.assign(grid.ulysses, k_shard);
  return p;
}

}  // namespace dbsp::plan
