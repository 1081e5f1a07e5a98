// The db-SP paper's planner, as published: greedy heads, then one biased-greedy assignment of the
// rows and (independently) the columns of the mask summed over all heads.
#pragma once

#include "dbsp/partition.hpp"
#include "plan/head_set_rows.hpp"

namespace dbsp::plan {

// Heads to Ulysses groups by the paper's greedy (all in group 0 when ulysses == 1).
std::vector<int> paper_head_assignment(const MaskStats::Data& stats, int ulysses);

// `all_heads`: head sets covering every head once (the block weights are sums over all heads);
// unused when grid.ring == 1.
Partition paper_partition(const MaskStats::Data& stats, Grid grid, double reward,
                          const HeadSets& all_heads);

// The two halves of paper_partition: heads and key blocks (from the statistics alone; query
// blocks at home), then the query blocks (from the rows).
Partition paper_key_partition(const MaskStats::Data& stats, Grid grid, double reward);
void paper_place_queries(const MaskStats::Data& stats, double reward, const HeadSets& all_heads,
                         Partition& partition);

}  // namespace dbsp::plan
