// Head level: which heads each Ulysses group owns.
#pragma once

#include <cstdint>
#include <vector>

namespace dbsp::plan {

// The paper's greedy: heads by kept blocks, heaviest first, each to the least-loaded group that
// still has room (group sizes as in the contiguous split; ties go to the lower group).
std::vector<int> paper_head_groups(const std::vector<int64_t>& head_kept, int groups);

// Ours: the same greedy start, then swaps (and, where a group may take one more head, moves)
// between the heaviest group and the others while they lower the heaviest group's load.
std::vector<int> balanced_head_groups(const std::vector<int64_t>& head_kept, int groups);

}  // namespace dbsp::plan
