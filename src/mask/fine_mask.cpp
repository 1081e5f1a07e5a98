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
#include "mask/fine_mask_parts.hpp"

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

// Whether one row's keys are sorted, unique and inside [0, seq_k); if so, sets the bits of the key
// blocks they fall in (`bits`: the row's covering words). Sorted keys need a range check at the
// ends only. A block's keys are consecutive and at most block_k, so the next block starts after
// the keys of the next block_k below its end: counted without branches, so both loops vectorize.
bool scan_row(const int32_t* keys, int64_t count, int64_t seq_k, int64_t block_k, uint64_t* bits) {
  if (count == 0) return true;
  if (keys[0] < 0 || keys[count - 1] >= seq_k) return false;
  unsigned unordered = 0;
  for (int64_t e = 1; e < count; ++e) unordered |= keys[e] <= keys[e - 1];
  if (unordered) return false;
  for (int64_t e = 0; e < count;) {
    const int64_t block = keys[e] / block_k;
    bits[block >> 6] |= uint64_t{1} << (block & 63);
    // The block's last key, in 32 bits (past 2^31 - 1 every key is in the block).
    const auto last = static_cast<int32_t>(
        std::min({seq_k, (block + 1) * block_k, int64_t{std::numeric_limits<int32_t>::max()} + 1}) -
        1);
    const int64_t window = std::min(count - e, block_k);
    int32_t in_block = 0;  // >= 1: keys[e] is in the block
    for (int64_t x = 0; x < window; ++x) in_block += keys[e + x] <= last;
    e += in_block;
  }
  return true;
}

// The checks both constructors make: sizes, and offsets rising from 0 to the key count (then
// every row lies inside the keys).
void check_lists(int heads, const MaskGeometry& geometry, const std::vector<int64_t>& row_offset,
                 size_t keys) {
  require(heads >= 0, "FineMask: heads must be >= 0, got ", heads);
  require(geometry.block_q > 0 && geometry.block_k > 0, "FineMask: block sizes must be > 0, got ",
          geometry.block_q, " x ", geometry.block_k);
  require(geometry.seq_q >= 0 && geometry.seq_k >= 0,
          "FineMask: sequence lengths must be >= 0, got seq_q ", geometry.seq_q, ", seq_k ",
          geometry.seq_k);
  const int64_t rows = int64_t{heads} * geometry.q_blocks();
  require(static_cast<int64_t>(row_offset.size()) == rows + 1,
          "FineMask: row_offset must have heads * q_blocks + 1 = ", rows + 1, " entries, got ",
          row_offset.size());
  require(row_offset.front() == 0, "FineMask: row_offset[0] must be 0, got ", row_offset.front());
  require(row_offset.back() == static_cast<int64_t>(keys), "FineMask: row_offset ends at ",
          row_offset.back(), " but key_index has ", keys, " entries");
  for (int64_t r = 0; r < rows; ++r) {
    require(row_offset[r] <= row_offset[r + 1], "FineMask: row_offset must not decrease, but row ",
            r, " spans [", row_offset[r], ", ", row_offset[r + 1], ")");
  }
}

// Keys per row of a fine mask that keeps `full` keys of every kept block and `last` of the last
// key block (the one that may be short) when it is kept.
std::vector<int64_t> row_offsets(const BlockMask& mask, int64_t full, int64_t last) {
  const int64_t rows = int64_t{mask.heads()} * mask.q_blocks();
  const int words = mask.words_per_row(), last_block = mask.k_blocks() - 1;
  std::vector<int64_t> row_offset(static_cast<size_t>(rows) + 1, 0);
  const uint64_t* bits = mask.heads() > 0 ? mask.row_bits(0, 0) : nullptr;  // rows in order
  for (int64_t r = 0; r < rows; ++r, bits += words) {
    int64_t blocks = 0;
    for (int w = 0; w < words; ++w) blocks += std::popcount(bits[w]);
    const bool last_kept = last_block >= 0 && ((bits[last_block >> 6] >> (last_block & 63)) & 1);
    row_offset[r + 1] = row_offset[r] + blocks * full + (last_kept ? last - full : 0);
  }
  return row_offset;
}

}  // namespace

FineMask::FineMask(int heads, MaskGeometry geometry, std::vector<int64_t> row_offset,
                   std::vector<int32_t> key_index)
    : heads_(heads),
      geometry_(geometry),
      row_offset_(std::move(row_offset)),
      key_index_(std::move(key_index)) {
  check_lists(heads, geometry, row_offset_, key_index_.size());
  covering_ = BlockMask(heads, geometry);
  const int64_t rows = int64_t{heads} * geometry.q_blocks();
  const int64_t words = covering_.words_per_row();
  uint64_t* covering_bits = covering_.row_bits(0, 0);  // rows after one another
  // Rows write only their own covering words, so the threads share none; the error names the
  // first bad row, as a serial check would.
  int64_t first_bad = rows;
  const bool parallel = key_index_.size() > (size_t{1} << 16);
#pragma omp parallel for schedule(dynamic, 64) reduction(min : first_bad) if (parallel)
  for (int64_t r = 0; r < rows; ++r) {
    if (!scan_row(key_index_.data() + row_offset_[r], row_offset_[r + 1] - row_offset_[r],
                  geometry.seq_k, geometry.block_k, covering_bits + r * words)) {
      first_bad = std::min(first_bad, r);
    }
  }
  if (first_bad == rows) return;
  const int64_t r = first_bad;
  for (int64_t k = row_offset_[r]; k < row_offset_[r + 1]; ++k) {
    const int32_t key = key_index_[k];
    require(key >= 0 && key < geometry.seq_k, "FineMask: key ", key, " of row ", r,
            " is outside [0, seq_k = ", geometry.seq_k, ")");
    require(k == row_offset_[r] || key_index_[k - 1] < key, "FineMask: keys of row ", r,
            " must be sorted and unique, but ", key_index_[k - 1], " is followed by ", key);
  }
  fail("FineMask: row ", r, " failed validation without a bad key");  // unreachable
}

FineMask::FineMask(Trusted, int heads, MaskGeometry geometry, std::vector<int64_t> row_offset,
                   std::vector<int32_t> key_index, BlockMask covering)
    : heads_(heads),
      geometry_(geometry),
      row_offset_(std::move(row_offset)),
      key_index_(std::move(key_index)),
      covering_(std::move(covering)) {
  check_lists(heads, geometry, row_offset_, key_index_.size());
  require(covering_.heads() == heads && covering_.geometry() == geometry,
          "FineMask: covering blocks of ", covering_.heads(), " heads over another geometry");
#ifndef NDEBUG
  const FineMask checked(heads, geometry, row_offset_, key_index_);  // throws on a bad key
  require(checked.covering_ == covering_, "FineMask: covering blocks differ from the keys'");
#endif
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
  const int64_t block_k = geometry.block_k;
  const int64_t last_size =
      mask.k_blocks() > 0 ? geometry.seq_k - int64_t{mask.k_blocks() - 1} * block_k : 0;
  std::vector<int64_t> row_offset = row_offsets(mask, block_k, last_size);
  const int64_t rows = static_cast<int64_t>(row_offset.size()) - 1;
  std::vector<int32_t> key_index(static_cast<size_t>(row_offset.back()));
#pragma omp parallel for schedule(dynamic, 16) if (key_index.size() > (size_t{1} << 16))
  for (int64_t r = 0; r < rows; ++r) {
    const uint64_t* row =
        mask.row_bits(static_cast<int>(r / mask.q_blocks()), static_cast<int>(r % mask.q_blocks()));
    int32_t* out = key_index.data() + row_offset[r];
    for (int w = 0; w < mask.words_per_row(); ++w) {
      for (uint64_t bits = row[w]; bits; bits &= bits - 1) {
        const int64_t block = int64_t{w} * 64 + std::countr_zero(bits);
        const int64_t first = block * block_k;
        const int64_t last = std::min(geometry.seq_k, first + block_k);
        for (int64_t key = first; key < last; ++key) *out++ = static_cast<int32_t>(key);
      }
    }
  }
  // Every kept block keeps its keys, so the covering blocks are the mask itself.
  return detail::FineMaskParts::assemble(mask.heads(), geometry, std::move(row_offset),
                                         std::move(key_index), mask);
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
  // Two passes over the rows: counts (they depend on block sizes only: every block but the last
  // holds block_k keys), then the keys.
  const int q_blocks = mask.q_blocks();
  std::vector<int64_t> row_offset =
      row_offsets(mask, thinned_keys(block_k, keep),
                  mask.k_blocks() > 0 ? thinned_keys(block_size(mask.k_blocks() - 1), keep) : 0);
  const int64_t rows = static_cast<int64_t>(row_offset.size()) - 1;
  std::vector<int32_t> key_index(static_cast<size_t>(row_offset.back()));
#pragma omp parallel for schedule(dynamic, 16) if (rows * mask.words_per_row() > (1 << 14))
  for (int64_t r = 0; r < rows; ++r) {
    const int h = static_cast<int>(r / q_blocks), i = static_cast<int>(r % q_blocks);
    int32_t* out = key_index.data() + row_offset[r];
    std::vector<int32_t> offsets(static_cast<size_t>(block_k));
    std::vector<uint64_t> chosen(static_cast<size_t>((block_k + 63) / 64), 0);
    const uint64_t* row = mask.row_bits(h, i);
    for (int w = 0; w < mask.words_per_row(); ++w) {
      for (uint64_t bits = row[w]; bits; bits &= bits - 1) {
        const int64_t block = int64_t{w} * 64 + std::countr_zero(bits);
        // The first `count` offsets of a seeded partial Fisher-Yates shuffle of the block, in
        // ascending order (read off a bit set: no sort).
        const int64_t size = block_size(block), count = thinned_keys(size, keep);
        for (int64_t n = 0; n < size; ++n) offsets[n] = static_cast<int32_t>(n);
        uint64_t state = splitmix(
            seed ^
            splitmix(static_cast<uint64_t>(h) ^
                     splitmix(static_cast<uint64_t>(i) ^ splitmix(static_cast<uint64_t>(block)))));
        for (int64_t n = 0; n < count; ++n) {
          state = splitmix(state);
          std::swap(offsets[n], offsets[n + static_cast<int64_t>(state % uint64_t(size - n))]);
          chosen[offsets[n] >> 6] |= uint64_t{1} << (offsets[n] & 63);
        }
        for (size_t c = 0; c < chosen.size(); ++c) {
          for (uint64_t pick = chosen[c]; pick; pick &= pick - 1) {
            *out++ =
                static_cast<int32_t>(block * block_k + int64_t(c) * 64 + std::countr_zero(pick));
          }
          chosen[c] = 0;
        }
      }
    }
  }
  // Every kept block keeps at least one key, so the covering blocks are the mask itself.
  return detail::FineMaskParts::assemble(mask.heads(), geometry, std::move(row_offset),
                                         std::move(key_index), mask);
}

}  // namespace dbsp
