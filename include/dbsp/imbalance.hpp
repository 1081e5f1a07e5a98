// The sparse imbalance ratio rho_s (SPEC 3) of a partition, for block and fine masks.
#pragma once

#include <vector>

#include "dbsp/block_mask.hpp"
#include "dbsp/fine_mask.hpp"
#include "dbsp/partition.hpp"

namespace dbsp {

struct ImbalanceReport {
  Grid grid;
  // work[g][a][b]: kept blocks (or M x 1 slices) of head group g, query shard a, key shard b.
  std::vector<std::vector<std::vector<double>>> work;
  std::vector<double> group_time;  // T_g = sum_t max_r work[g][r][(r + t) mod R]
  double mean_rank_work = 0;       // sum of work / P
  double ratio = 1;                // max_g T_g / mean_rank_work (1 for an empty mask)
};

ImbalanceReport imbalance_report(const BlockMask& mask, const Partition& partition);
// Fine masks: each kept key counts as one M x 1 slice, weighted by the true size of its query
// block; key shard of a key = shard of its key block (block_k of the mask geometry).
ImbalanceReport imbalance_report(const FineMask& mask, const Partition& partition);

inline double imbalance_ratio(const BlockMask& mask, const Partition& partition) {
  return imbalance_report(mask, partition).ratio;
}
inline double imbalance_ratio(const FineMask& mask, const Partition& partition) {
  return imbalance_report(mask, partition).ratio;
}

// rho_s from a work tensor (shared by all callers so that the formula lives in one place).
ImbalanceReport imbalance_from_work(Grid grid, std::vector<std::vector<std::vector<double>>> work);

}  // namespace dbsp
