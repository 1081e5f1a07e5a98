// shared_head_splits: greedy, heaviest group to lightest, one head's row suffix at a time.
#include "plan/head_split.hpp"

#include <algorithm>
#include <cmath>

namespace dbsp::plan {

std::vector<HeadSplit> shared_head_splits(const BlockMask& mask,
                                          const std::vector<int64_t>& kept_per_head,
                                          const std::vector<int>& head_group, int groups,
                                          double least_gain) {
  std::vector<HeadSplit> splits;
  const int heads = static_cast<int>(head_group.size());
  const int q_blocks = mask.q_blocks();
  if (groups <= 1 || q_blocks < 2) return splits;
  std::vector<double> load(static_cast<size_t>(groups), 0.0);
  double total = 0;
  for (int h = 0; h < heads; ++h) {
    load[head_group[h]] += double(kept_per_head[h]);
    total += double(kept_per_head[h]);
  }
  const double mean = total / groups;
  std::vector<bool> split(static_cast<size_t>(heads), false);
  std::vector<int> row_kept(static_cast<size_t>(q_blocks));
  for (int round = 0; round < groups; ++round) {
    const int heavy = static_cast<int>(std::max_element(load.begin(), load.end()) - load.begin());
    const int light = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    const double move = std::min(load[heavy] - mean, mean - load[light]);
    if (move <= least_gain) break;
    // The heaviest head the heavy group still holds whole: it can give the most rows.
    int head = -1;
    for (int h = 0; h < heads; ++h) {
      if (head_group[h] == heavy && !split[h] &&
          (head < 0 || kept_per_head[h] > kept_per_head[head])) {
        head = h;
      }
    }
    if (head < 0 || double(kept_per_head[head]) <= move) break;
    // The suffix of its rows whose kept blocks come closest to `move` (at least one row stays).
    for (int i = 0; i < q_blocks; ++i) row_kept[i] = mask.row_kept(head, i);
    double taken = 0, best_taken = 0;
    int best_first = q_blocks;
    for (int first = q_blocks - 1; first >= 1; --first) {
      taken += row_kept[first];
      if (std::abs(taken - move) < std::abs(best_taken - move)) {
        best_taken = taken;
        best_first = first;
      }
      if (taken >= move) break;
    }
    if (best_first >= q_blocks || best_taken <= least_gain) break;
    splits.push_back({head, light, BlockRange{best_first, q_blocks}});
    split[head] = true;
    load[heavy] -= best_taken;
    load[light] += best_taken;
  }
  return splits;
}

}  // namespace dbsp::plan
