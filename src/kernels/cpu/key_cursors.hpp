// Key cursors: the keys one query block attends to, handed out a tile at a time. Dense attention
// walks a token range, block-sparse attention the tokens of its kept key blocks, fine attention
// an explicit key list. A cursor is a small value; copying it restarts the walk.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "dbsp/block_layout.hpp"

namespace dbsp::cpu {

// Every token in [begin, end).
class TokenRangeCursor {
 public:
  TokenRangeCursor(int64_t begin, int64_t end) : next_(begin), end_(end) {}
  int fill(int64_t* keys, int capacity) {
    int count = 0;
    while (count < capacity && next_ < end_) keys[count++] = next_++;
    return count;
  }

 private:
  int64_t next_;
  int64_t end_;
};

// The tokens of the given key blocks of `layout`, in list order.
class BlockKeyCursor {
 public:
  BlockKeyCursor(const BlockLayout& layout, std::span<const int32_t> blocks)
      : layout_(&layout), blocks_(blocks) {}
  int fill(int64_t* keys, int capacity) {
    int count = 0;
    while (count < capacity) {
      if (next_ == run_end_) {
        if (next_block_ == blocks_.size()) break;
        const int32_t block = blocks_[next_block_++];
        next_ = layout_->start[block];
        run_end_ = layout_->start[block + 1];
        continue;
      }
      keys[count++] = next_++;
    }
    return count;
  }

 private:
  const BlockLayout* layout_;
  std::span<const int32_t> blocks_;
  std::size_t next_block_ = 0;
  int64_t next_ = 0;
  int64_t run_end_ = 0;
};

// An explicit list of key tokens.
class KeyListCursor {
 public:
  explicit KeyListCursor(std::span<const int32_t> keys) : keys_(keys) {}
  int fill(int64_t* keys, int capacity) {
    int count = 0;
    while (count < capacity && next_ < keys_.size()) keys[count++] = keys_[next_++];
    return count;
  }

 private:
  std::span<const int32_t> keys_;
  std::size_t next_ = 0;
};

}  // namespace dbsp::cpu
