// Fine masks (FG-Attn): per (head, query block of block_q queries) a sorted list of single keys.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dbsp/block_mask.hpp"

namespace dbsp {

namespace detail {
struct FineMaskParts;  // dbsp's own producers of valid lists (src/mask/fine_mask_parts.hpp)
}  // namespace detail

class FineMask {
 public:
  FineMask() = default;
  // Row r = head * q_blocks + q_block; keys[row_offset[r] .. row_offset[r+1]) sorted, unique.
  // Validates every row (in parallel over rows for large masks; the error names the first bad
  // row, as a serial check would).
  FineMask(int heads, MaskGeometry geometry, std::vector<int64_t> row_offset,
           std::vector<int32_t> key_index);

  int heads() const { return heads_; }
  int q_blocks() const { return geometry_.q_blocks(); }
  const MaskGeometry& geometry() const { return geometry_; }
  std::span<const int32_t> keys(int head, int q_block) const;
  const std::vector<int64_t>& row_offset() const { return row_offset_; }
  const std::vector<int32_t>& key_index() const { return key_index_; }

  int64_t kept() const { return static_cast<int64_t>(key_index_.size()); }  // M x 1 slices
  int64_t kept(int head) const;
  double density() const;  // kept slices / (heads * q_blocks * seq_k)

  // Every key of every kept block (a block mask is a fine mask with whole runs kept).
  static FineMask from_block(const BlockMask& mask);
  // Key blocks that hold at least one kept key (for block_k-granular kernels and planning).
  // Found by the constructor's validation pass, which reads every key anyway: the routing and
  // planning of a layer read it at no cost, however often they ask.
  const BlockMask& covering_blocks() const { return covering_; }

  bool operator==(const FineMask&) const = default;

 private:
  friend struct detail::FineMaskParts;
  struct Trusted {};
  // Lists valid by construction and their covering blocks: shapes and offsets are checked, the
  // keys only in debug builds.
  FineMask(Trusted, int heads, MaskGeometry geometry, std::vector<int64_t> row_offset,
           std::vector<int32_t> key_index, BlockMask covering);

  int heads_ = 0;
  MaskGeometry geometry_{};
  std::vector<int64_t> row_offset_{0};
  std::vector<int32_t> key_index_;
  BlockMask covering_;
};

// A fine mask inside a block mask: in every kept block of every row, a seeded subset of about
// `keep` of the block's keys (round(keep * block size), at least one), chosen independently per
// (head, query block, key block), so covering_blocks() gives `mask` back. keep in (0, 1]; 1 keeps
// every key (from_block). Deterministic in (mask, keep, seed) on every platform, so ranks that
// thin the same mask with the same seed hold the same fine mask.
FineMask thin_blocks(const BlockMask& mask, double keep, uint64_t seed);

}  // namespace dbsp
