// Fine masks (FG-Attn): validation of the per-row key lists, counts, conversion to and from
// block masks, and seeded thinning of a block mask's kept blocks.
#include "dbsp/fine_mask.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "dbsp/error.hpp"

namespace dbsp {
namespace {

uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Keys thin_blocks keeps of a block of `size` keys.
int64_t thinned_keys(int64_t size, double keep) {
  return std::clamp<int64_t>(std::llround(keep * static_cast<double>(size)), 1, size);
}

}  // namespace

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

FineMask thin_blocks(const BlockMask& mask, double keep, uint64_t seed) {
  require(std::isfinite(keep) && keep > 0 && keep <= 1, "thin_blocks: keep must be in (0, 1], got ",
          keep);
  if (keep == 1) return FineMask::from_block(mask);
  const MaskGeometry& geometry = mask.geometry();
  require(geometry.seq_k <= std::numeric_limits<int32_t>::max(), "thin_blocks: seq_k ",
          geometry.seq_k, " does not fit the 32-bit key indices");
  const int64_t block_k = geometry.block_k;
  auto block_size = [&](int64_t block) {
    return std::min(geometry.seq_k, (block + 1) * block_k) - block * block_k;
  };
  auto for_each_kept = [&](int h, int i, auto&& visit) {
    const uint64_t* row = mask.row_bits(h, i);
    for (int w = 0; w < mask.words_per_row(); ++w) {
      for (uint64_t bits = row[w]; bits; bits &= bits - 1) {
        visit(int64_t{w} * 64 + std::countr_zero(bits));
      }
    }
  };
  // Two passes over the rows: counts (they depend on block sizes only), then the keys.
  const int q_blocks = mask.q_blocks();
  const int64_t rows = int64_t{mask.heads()} * q_blocks;
  std::vector<int64_t> row_offset(static_cast<size_t>(rows) + 1, 0);
  for (int64_t r = 0; r < rows; ++r) {
    int64_t count = 0;
    for_each_kept(static_cast<int>(r / q_blocks), static_cast<int>(r % q_blocks),
                  [&](int64_t block) { count += thinned_keys(block_size(block), keep); });
    row_offset[r + 1] = row_offset[r] + count;
  }
  std::vector<int32_t> key_index(static_cast<size_t>(row_offset.back()));
#pragma omp parallel for schedule(dynamic, 16) if (rows * mask.words_per_row() > (1 << 14))
  for (int64_t r = 0; r < rows; ++r) {
    const int h = static_cast<int>(r / q_blocks), i = static_cast<int>(r % q_blocks);
    int32_t* out = key_index.data() + row_offset[r];
    std::vector<int32_t> offsets(static_cast<size_t>(block_k));
    for_each_kept(h, i, [&](int64_t block) {
      // The first `count` offsets of a seeded partial Fisher-Yates shuffle of the block, sorted.
      const int64_t size = block_size(block), count = thinned_keys(size, keep);
      for (int64_t n = 0; n < size; ++n) offsets[n] = static_cast<int32_t>(n);
      uint64_t state = splitmix(seed ^ splitmix(static_cast<uint64_t>(h) ^
                                                splitmix(static_cast<uint64_t>(i) ^
                                                         splitmix(static_cast<uint64_t>(block)))));
      for (int64_t n = 0; n < count; ++n) {
        state = splitmix(state);
        std::swap(offsets[n], offsets[n + static_cast<int64_t>(state % uint64_t(size - n))]);
      }
      std::sort(offsets.begin(), offsets.begin() + count);
      for (int64_t n = 0; n < count; ++n) {
        *out++ = static_cast<int32_t>(block * block_k + offsets[n]);
      }
    });
  }
  return FineMask(mask.heads(), geometry, std::move(row_offset), std::move(key_index));
}

}  // namespace dbsp
