// The db-SP paper's planner, as published: greedy heads, then one biased-greedy assignment of the
// rows and (independently) the columns of the mask summed over all heads.
#pragma once

#include "dbsp/partition.hpp"
#include "plan/mask_stats.hpp"

namespace dbsp::plan {

Partition paper_partition(const MaskStats::Data& stats, Grid grid, double reward);

}  // namespace dbsp::plan
