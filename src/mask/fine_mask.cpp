// Fine masks (FG-Attn): validation of the per-row key lists, counts, and conversion to and from
// block masks.
#include "dbsp/fine_mask.hpp"

#include <algorithm>
#include <bit>
#include <limits>
#include <utility>

#include "dbsp/error.hpp"

namespace dbsp {

FineMask::FineMask(int heads, MaskGeometry geometry, std::vector<int64_t> row_offset,
                   std::vector<int32_t> key_index)
    : heads_(heads),
      geometry_(geometry),
      row_offset_(std::move(row_offset)),
      key_index_(std::move(key_index)) {
  require(heads >= 0, "FineMask: heads must be >= 0, got ", heads);
  require(geometry.block_q > 0 && geometry.block_k > 0, "FineMask: block sizes must be > 0, got ",
          geometry.block_q, " x ", geometry.block_k);
  require(geometry.seq_q >= 0 && geometry.seq_k >= 0,
          "FineMask: sequence lengths must be >= 0, got seq_q ", geometry.seq_q, ", seq_k ",
          geometry.seq_k);
  const int64_t rows = int64_t{heads} * geometry.q_blocks();
  require(static_cast<int64_t>(row_offset_.size()) == rows + 1,
          "FineMask: row_offset must have heads * q_blocks + 1 = ", rows + 1, " entries, got ",
          row_offset_.size());
  require(row_offset_.front() == 0, "FineMask: row_offset[0] must be 0, got ", row_offset_.front());
  require(row_offset_.back() == static_cast<int64_t>(key_index_.size()),
          "FineMask: row_offset ends at ", row_offset_.back(), " but key_index has ",
          key_index_.size(), " entries");
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t begin = row_offset_[r];
    const int64_t end = row_offset_[r + 1];
    require(begin <= end, "FineMask: row_offset must not decrease, but row ", r, " spans [", begin,
            ", ", end, ")");
    for (int64_t k = begin; k < end; ++k) {
      const int32_t key = key_index_[k];
      require(key >= 0 && key < geometry.seq_k, "FineMask: key ", key, " of row ", r,
              " is outside [0, seq_k = ", geometry.seq_k, ")");
      require(k == begin || key_index_[k - 1] < key, "FineMask: keys of row ", r,
              " must be sorted and unique, but ", key_index_[k - 1], " is followed by ", key);
    }
  }
}

std::span<const int32_t> FineMask::keys(int head, int q_block) const {
  require(head >= 0 && head < heads_ && q_block >= 0 && q_block < q_blocks(),
          "FineMask::keys: (head ", head, ", query block ", q_block, ") outside ", heads_, " x ",
          q_blocks());
  const int64_t r = int64_t{head} * q_blocks() + q_block;
  return {key_index_.data() + row_offset_[r],
          static_cast<size_t>(row_offset_[r + 1] - row_offset_[r])};
}

int64_t FineMask::kept(int head) const {
  require(head >= 0 && head < heads_, "FineMask::kept: head ", head, " outside [0, ", heads_, ")");
  const int64_t first_row = int64_t{head} * q_blocks();
  return row_offset_[first_row + q_blocks()] - row_offset_[first_row];
}

double FineMask::density() const {
  const double cells = double(heads_) * q_blocks() * double(geometry_.seq_k);
  return cells > 0 ? double(kept()) / cells : 0.0;
}

FineMask FineMask::from_block(const BlockMask& mask) {
  const MaskGeometry& geometry = mask.geometry();
  require(geometry.seq_k <= std::numeric_limits<int32_t>::max(), "FineMask::from_block: seq_k ",
          geometry.seq_k, " does not fit the 32-bit key indices");
  const int64_t rows = int64_t{mask.heads()} * mask.q_blocks();
  std::vector<int64_t> row_offset(rows + 1, 0);
  std::vector<int32_t> key_index;
  key_index.reserve(static_cast<size_t>(mask.kept()) * geometry.block_k);
  for (int h = 0; h < mask.heads(); ++h) {
    for (int i = 0; i < mask.q_blocks(); ++i) {
      const uint64_t* row = mask.row_bits(h, i);
      for (int w = 0; w < mask.words_per_row(); ++w) {
        for (uint64_t bits = row[w]; bits; bits &= bits - 1) {
          const int64_t block = int64_t{w} * 64 + std::countr_zero(bits);
          const int64_t first = block * geometry.block_k;
          const int64_t last = std::min(geometry.seq_k, first + geometry.block_k);
          for (int64_t key = first; key < last; ++key) {
            key_index.push_back(static_cast<int32_t>(key));
          }
        }
      }
      const int64_t r = int64_t{h} * mask.q_blocks() + i;
      row_offset[r + 1] = static_cast<int64_t>(key_index.size());
    }
  }
  return FineMask(mask.heads(), geometry, std::move(row_offset), std::move(key_index));
}

BlockMask FineMask::covering_blocks() const {
  BlockMask blocks(heads_, geometry_);
  for (int h = 0; h < heads_; ++h) {
    for (int i = 0; i < q_blocks(); ++i) {
      for (int32_t key : keys(h, i)) blocks.set(h, i, key / geometry_.block_k);
    }
  }
  return blocks;
}

}  // namespace dbsp
