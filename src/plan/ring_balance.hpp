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

// Key blocks to the R shards of a head group so that the shards' masses are nearly equal (each
// rank meets every key shard of its group once). Needs only the statistics, so that the group's
// rows can be counted per these shards while they are built.
std::vector<int> balanced_key_shards(const MaskStats::Data& stats, const std::vector<int>& heads,
                                     int ring);

// `home_work`: the group's W with every block at home; `sets`: its rows, counted per the key
// shards `k_shard` (balanced_key_shards of its heads). `target_time`: the group is balanced enough
// once its time is at most this; the balancer then stops moving blocks (at home: no block moves).
RingAssignment balance_ring(const MaskStats::Data& stats, const HeadSets& sets, int ring,
                            std::vector<std::vector<double>> home_work,
                            const std::vector<int>& k_shard, double target_time, int search_rounds);

// Work matrix and time of a given query assignment over per-row shard masses.
double ring_time(const std::vector<std::vector<double>>& work);

}  // namespace dbsp::plan
