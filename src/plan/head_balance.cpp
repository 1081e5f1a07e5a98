// Head-to-group assignment for the Ulysses level.
#include "plan/head_balance.hpp"

#include <algorithm>
#include <numeric>

#include "dbsp/block_layout.hpp"

namespace dbsp::plan {
namespace {

std::vector<int> heaviest_first(const std::vector<int64_t>& head_kept) {
  std::vector<int> order(head_kept.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return head_kept[a] > head_kept[b]; });
  return order;
}

std::vector<int> group_capacity(int heads, int groups) {
  std::vector<int> capacity(groups);
  for (int g = 0; g < groups; ++g) {
    capacity[g] = shard_begin(g + 1, heads, groups) - shard_begin(g, heads, groups);
  }
  return capacity;
}

std::vector<int> greedy(const std::vector<int64_t>& head_kept, const std::vector<int>& capacity) {
  const int groups = static_cast<int>(capacity.size());
  std::vector<int> assignment(head_kept.size(), 0), count(groups, 0);
  std::vector<int64_t> load(groups, 0);
  for (int h : heaviest_first(head_kept)) {
    int best = -1;
    for (int g = 0; g < groups; ++g) {
      if (count[g] < capacity[g] && (best < 0 || load[g] < load[best])) best = g;
    }
    assignment[h] = best;
    load[best] += head_kept[h];
    ++count[best];
  }
  return assignment;
}

}  // namespace

std::vector<int> paper_head_groups(const std::vector<int64_t>& head_kept, int groups) {
  return greedy(head_kept, group_capacity(static_cast<int>(head_kept.size()), groups));
}

std::vector<int> balanced_head_groups(const std::vector<int64_t>& head_kept, int groups,
                                      double extra_head) {
  const int heads = static_cast<int>(head_kept.size());
  std::vector<int> capacity = group_capacity(heads, groups);
  std::vector<int> assignment = greedy(head_kept, capacity);
  if (groups <= 1) return assignment;
  // A group may hold one head more than the even split when that lowers the maximum by more than
  // the extra head costs: its Ulysses traffic and rows are on the critical path too.
  const int even_heads = *std::max_element(capacity.begin(), capacity.end());
  const int max_heads = even_heads + 1;
  std::vector<int64_t> load(groups, 0);
  std::vector<int> count(groups, 0);
  for (int h = 0; h < heads; ++h) {
    load[assignment[h]] += head_kept[h];
    ++count[assignment[h]];
  }
  int over = 0;  // groups holding more heads than the even split
  for (int round = 0; round < 4 * heads; ++round) {
    const int top = static_cast<int>(std::max_element(load.begin(), load.end()) - load.begin());
    const bool already_over = over > 0;
    // Objective: the heaviest load, plus extra_head while some group is over the even split.
    double best_cost = double(load[top]) + (already_over ? extra_head : 0.0);
    int best_a = -1, best_b = -1, best_group = -1;
    for (int a = 0; a < heads; ++a) {
      if (assignment[a] != top) continue;
      for (int g = 0; g < groups; ++g) {
        if (g == top) continue;
        if (count[g] < max_heads && count[top] > 1) {  // move a to g
          const int64_t m = std::max(load[top] - head_kept[a], load[g] + head_kept[a]);
          // Whether some group stays over the even split after the move: `top` may leave it,
          // `g` may join it.
          const bool stays_over = over - (count[top] == max_heads) + (count[g] == even_heads) > 0;
          // (The pair's new maximum, as for swaps: when other groups tie with the top one,
          // later rounds lower them in turn.)
          const double cost = double(m) + (stays_over ? extra_head : 0.0);
          if (cost < best_cost) best_cost = cost, best_a = a, best_b = -1, best_group = g;
        }
        for (int b = 0; b < heads; ++b) {  // swap a and b
          if (assignment[b] != g || head_kept[b] >= head_kept[a]) continue;
          const int64_t delta = head_kept[a] - head_kept[b];
          const int64_t m = std::max(load[top] - delta, load[g] + delta);
          const double cost = double(m) + (already_over ? extra_head : 0.0);
          if (cost < best_cost) best_cost = cost, best_a = a, best_b = b, best_group = g;
        }
      }
    }
    if (best_a < 0) break;
    load[top] -= head_kept[best_a];
    load[best_group] += head_kept[best_a];
    assignment[best_a] = best_group;
    if (best_b >= 0) {
      load[best_group] -= head_kept[best_b];
      load[top] += head_kept[best_b];
      assignment[best_b] = top;
    } else {
      over -= count[top] == max_heads;
      over += count[best_group] == even_heads;
      --count[top];
      ++count[best_group];
    }
  }
  return assignment;
}

}  // namespace dbsp::plan
