// The paper's dual-level partition (db-SP, Sec. 4): heads by the greedy of head_balance, blocks by
// a greedy whose home shard counts `reward` x the block's weight less than its load.
#include "plan/paper_planner.hpp"

#include <algorithm>
#include <numeric>

#include "dbsp/block_layout.hpp"
#include "plan/bit_counting.hpp"
#include "plan/head_balance.hpp"

namespace dbsp::plan {
namespace {

std::vector<int> biased_greedy(const std::vector<double>& weight, int parts, double reward) {
  const int n = static_cast<int>(weight.size());
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return weight[a] > weight[b]; });
  std::vector<int> shard(n), count(parts, 0), capacity(parts);
  std::vector<double> load(parts, 0.0);
  for (int p = 0; p < parts; ++p)
    capacity[p] = shard_begin(p + 1, n, parts) - shard_begin(p, n, parts);
  for (int idx : order) {
    const int home = home_shard(idx, n, parts);
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

Partition paper_partition(const MaskStats::Data& stats, Grid grid, double reward) {
  const BlockMask& mask = *stats.mask;
  const int H = mask.heads(), QB = mask.q_blocks(), KB = mask.k_blocks();
  Partition p = Partition::contiguous(grid, H, QB, KB);
  p.head_group = grid.ulysses > 1 ? paper_head_groups(stats.kept_per_head, grid.ulysses)
                                  : std::vector<int>(H, 0);
  if (grid.ring == 1) return p;
  std::vector<double> row_sum(QB, 0.0), col_sum(KB, 0.0);
  ColumnCounter columns(mask.words_per_row());
  for (int h = 0; h < H; ++h) {
    for (int i = 0; i < QB; ++i) {
      const int32_t* seg = stats.segments(h, i);
      for (int s = 0; s < stats.ranks; ++s) row_sum[i] += seg[s];
      columns.add_row(mask.row_bits(h, i));
    }
  }
  for (int j = 0; j < KB; ++j) col_sum[j] = double(columns.count(j));
  const std::vector<int> q_shard = biased_greedy(row_sum, grid.ring, reward);
  const std::vector<int> k_shard = biased_greedy(col_sum, grid.ring, reward);
  p.q_shard.assign(grid.ulysses, q_shard);
  p.k_shard.assign(grid.ulysses, k_shard);
  return p;
}

}  // namespace dbsp::plan
