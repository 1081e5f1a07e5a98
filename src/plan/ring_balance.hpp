// Block level, ours: per head group, assign key blocks and query blocks to ring shards so that
// every ring step is balanced (the per-step maxima, which decide the time), moving as few blocks
// as the target allows.
#pragma once

#include <vector>

#include "plan/head_set_rows.hpp"

namespace dbsp::plan {

struct RingAssignment {
  std::vector<int> q_shard;               // [q_blocks]
  std::vector<int> k_shard;               // [k_blocks]
  std::vector<std::vector<double>> work;  // [R][R]: query shard x key shard
  double time = 0;                        // sum_t max_r work[r][(r + t) mod R]
};

// `target_time`: the group is balanced enough once its time is at most this; the balancer then
// stops moving blocks.
RingAssignment balance_ring(const MaskStats::Data& stats, const HeadSets& sets, int ring,
                            double target_time, int search_rounds);

// Work matrix and time of a given query assignment over per-row shard masses.
double ring_time(const std::vector<std::vector<double>>& work);

}  // namespace dbsp::plan
