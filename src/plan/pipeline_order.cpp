// pipeline_head_order: where each group's heads sit in its pipelined head chunks.
#include <algorithm>
#include <vector>

#include "dbsp/error.hpp"
#include "dbsp/planner.hpp"

namespace dbsp {

std::vector<int> pipeline_head_order(const Partition& partition,
                                     const std::vector<int64_t>& head_work) {
  require(static_cast<int>(head_work.size()) == partition.heads,
          "pipeline_head_order: ", head_work.size(), " head weights for ", partition.heads,
          " heads");
  std::vector<int> order;
  order.reserve(static_cast<size_t>(partition.heads));
  size_t most_heads = 0;
  for (int g = 0; g < partition.grid.ulysses; ++g) {
    most_heads = std::max(most_heads, partition.heads_of(g).size());
  }
  for (int g = 0; g < partition.grid.ulysses; ++g) {
    // Its own heads only: the heads it shares with their owners follow them (Partition::heads_of).
    std::vector<int> heads = partition.heads_of(g);
    std::erase_if(heads, [&](int h) { return partition.head_group[h] != g; });
    // Heavier first; equal work in ascending head order (whatever order the partition had), so
    // every rank derives the same.
    std::sort(heads.begin(), heads.end(), [&](int a, int b) {
      return head_work[a] != head_work[b] ? head_work[a] > head_work[b] : a < b;
    });
    if (heads.size() >= 3) std::rotate(heads.begin() + 1, heads.begin() + 2, heads.end());
    // Two heads where no group holds more than three: no input chunk carries more than one head
    // of any group, so the lighter head's kernel hides the next chunk's inputs too, and going
    // first it lets the first output chunk leave early; the heavier one returns last (measured
    // at P = 16: heavier first held every output all-to-all until the layer's end, 0.45 ms).
    if (heads.size() == 2 && most_heads <= 3) std::swap(heads[0], heads[1]);
    order.insert(order.end(), heads.begin(), heads.end());
  }
  return order;
}

}  // namespace dbsp
