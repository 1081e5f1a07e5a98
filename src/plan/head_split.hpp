// Shared heads: on grids without a ring, the heaviest group hands a share of one head's query
// rows to the lightest (Partition::head_splits).
#pragma once

#include <cstdint>
#include <vector>

#include "dbsp/block_mask.hpp"
#include "dbsp/partition.hpp"

namespace dbsp::plan {

// Splits for `head_group` (U groups, no ring): while the heaviest group exceeds the mean by more
// than `least_gain` kept blocks, and so does the lightest fall short of it, the heaviest group's
// heaviest unsplit head gives the suffix of its query rows that brings one of them to the mean to
// the lightest group. Each head is split at most once; the groups' loads are exact (row counts).
std::vector<HeadSplit> shared_head_splits(const BlockMask& mask,
                                          const std::vector<int64_t>& kept_per_head,
                                          const std::vector<int>& head_group, int groups,
                                          double least_gain);

}  // namespace dbsp::plan
