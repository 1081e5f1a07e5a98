// Head level: which heads each Ulysses group owns.
#pragma once

#include <cstdint>
#include <vector>

namespace dbsp::plan {

// The paper's greedy: heads by kept blocks, heaviest first, each to the least-loaded group that
// still has room (group sizes as in the contiguous split; ties go to the lower group).
std::vector<int> paper_head_groups(const std::vector<int64_t>& head_kept, int groups);

// Ours: the same greedy start, then swaps (and, where a group may take one more head, moves)
// between the heaviest group and the others while they lower the heaviest group's load. A group
// holding one head more than the even split's largest group costs `extra_head` (kept blocks'
// worth of time: its all-to-all traffic and rows), so such moves must save more than that.
std::vector<int> balanced_head_groups(const std::vector<int64_t>& head_kept, int groups,
                                      double extra_head = 0.0);

}  // namespace dbsp::plan
