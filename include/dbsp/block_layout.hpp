// How tokens are cut into blocks: block b covers tokens [start[b], start[b+1]) of a tensor.
// Uniform layouts have a short last block; permuted shards (db-SP) can hold a short block anywhere.
#pragma once

#include <cstdint>
#include <vector>

namespace dbsp {

struct BlockLayout {
  std::vector<int64_t> start{0};  // size blocks() + 1, increasing, start[0] == 0

  static BlockLayout uniform(int64_t tokens, int64_t block_size);
  // Concatenation of the given blocks of `base`, in the given order.
  static BlockLayout gather(const BlockLayout& base, const std::vector<int>& blocks);

  int blocks() const { return static_cast<int>(start.size()) - 1; }
  int64_t tokens() const { return start.back(); }
  int64_t size(int block) const { return start[block + 1] - start[block]; }
  bool operator==(const BlockLayout&) const = default;
};

// Home ring shard of a block when `blocks` blocks are split into `parts` contiguous shards
// (shard r owns blocks [r*blocks/parts, (r+1)*blocks/parts)); shard sizes differ by at most one.
int home_shard(int block, int blocks, int parts);
// First block of shard `part` in that split; shard_begin(parts) == blocks.
int shard_begin(int part, int blocks, int parts);

}  // namespace dbsp
