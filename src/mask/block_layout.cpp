// Token-to-block layouts and the contiguous home split of blocks over shards.
#include "dbsp/block_layout.hpp"

#include "dbsp/error.hpp"

namespace dbsp {

BlockLayout BlockLayout::uniform(int64_t tokens, int64_t block_size) {
  require(tokens >= 0, "BlockLayout: token count must be >= 0, got ", tokens);
  require(block_size > 0, "BlockLayout: block size must be > 0, got ", block_size);
  BlockLayout layout;
  for (int64_t begin = 0; begin < tokens; begin += block_size) {
    layout.start.push_back(std::min(tokens, begin + block_size));
  }
  return layout;
}

BlockLayout BlockLayout::gather(const BlockLayout& base, const std::vector<int>& blocks) {
  BlockLayout layout;
  layout.start.reserve(blocks.size() + 1);
  for (int b : blocks) {
    require(b >= 0 && b < base.blocks(), "BlockLayout::gather: block ", b, " out of range [0, ",
            base.blocks(), ")");
    layout.start.push_back(layout.start.back() + base.size(b));
  }
  return layout;
}

int shard_begin(int part, int blocks, int parts) {
  return static_cast<int>(int64_t{part} * blocks / parts);
}

int home_shard(int block, int blocks, int parts) {
  // Largest r with shard_begin(r) <= block.
  int r = static_cast<int>((int64_t{block} * parts + parts - 1) / blocks);
  while (r > 0 && shard_begin(r, blocks, parts) > block) --r;
  while (r + 1 < parts && shard_begin(r + 1, blocks, parts) <= block) ++r;
  return r;
}

}  // namespace dbsp
