// Home shard of every block in one pass (home_shard() per block costs a few divisions each).
#pragma once

#include <vector>

#include "dbsp/block_layout.hpp"

namespace dbsp::plan {

inline std::vector<int> home_shards(int blocks, int parts) {
  std::vector<int> home(blocks > 0 ? blocks : 0);
  for (int r = 0; r < parts; ++r) {
    const int end = shard_begin(r + 1, blocks, parts);
    for (int b = shard_begin(r, blocks, parts); b < end; ++b) home[b] = r;
  }
  return home;
}

}  // namespace dbsp::plan
