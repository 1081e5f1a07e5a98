// Block masks: which key blocks each query block of each head attends to, bit-packed, plus the
// per-row CSR lists that kernels consume.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace dbsp {

struct MaskGeometry {
  int64_t seq_q = 0;   // query tokens
  int64_t seq_k = 0;   // key tokens
  int block_q = 64;
  int block_k = 64;

  int q_blocks() const { return static_cast<int>((seq_q + block_q - 1) / block_q); }
  int k_blocks() const { return static_cast<int>((seq_k + block_k - 1) / block_k); }
  // Geometry for whole blocks only (as in a mask file that carries no token counts).
  static MaskGeometry from_blocks(int q_blocks, int k_blocks, int block_q = 64, int block_k = 64);
  bool operator==(const MaskGeometry&) const = default;
};

// Per (head, query block) lists of kept key blocks, sorted. Row r = head * q_blocks + q_block.
struct BlockCsr {
  int heads = 0;
  int q_blocks = 0;
  int k_blocks = 0;
  std::vector<int32_t> kv_count;    // [heads * q_blocks]
  std::vector<int64_t> row_offset;  // [heads * q_blocks + 1]
  std::vector<int32_t> kv_index;    // [row_offset.back()]

  std::span<const int32_t> row(int head, int q_block) const;
};

class BlockMask {
 public:
  BlockMask() = default;
  BlockMask(int heads, MaskGeometry geometry, bool fill = false);

  int heads() const { return heads_; }
  int q_blocks() const { return q_blocks_; }
  int k_blocks() const { return k_blocks_; }
  const MaskGeometry& geometry() const { return geometry_; }
  int words_per_row() const { return words_per_row_; }

  bool get(int head, int q_block, int k_block) const;
  void set(int head, int q_block, int k_block, bool keep = true);
  // Bits of one row, LSB of word 0 = key block 0; bits past k_blocks are always zero.
  const uint64_t* row_bits(int head, int q_block) const;
  uint64_t* row_bits(int head, int q_block);

  int64_t kept(int head) const;             // kept blocks of one head
  int64_t kept() const;                     // all heads
  int row_kept(int head, int q_block) const;
  std::vector<int64_t> kept_per_head() const;
  double density() const;                   // kept / (heads * q_blocks * k_blocks)
  double density(int head) const;
  // Fraction of the score matrix kept, counting the short last blocks at their true size.
  double token_density() const;

  BlockCsr to_csr() const;
  static BlockMask from_csr(const BlockCsr& csr, MaskGeometry geometry);
  // The given heads, query blocks and key blocks, in that order (a shard's local mask). The
  // geometry counts whole blocks; the caller keeps the true token layout (BlockLayout::gather).
  BlockMask slice(std::span<const int> heads, std::span<const int> q_blocks,
                  std::span<const int> k_blocks) const;

  bool operator==(const BlockMask&) const = default;

 private:
  int heads_ = 0;
  int q_blocks_ = 0;
  int k_blocks_ = 0;
  int words_per_row_ = 0;
  MaskGeometry geometry_{};
  std::vector<uint64_t> bits_;  // [heads][q_blocks][words_per_row]
};

// A mask per (step, layer), as loaded from a file with leading [steps, layers] axes.
struct MaskSeries {
  int steps = 1;
  int layers = 1;
  std::vector<BlockMask> masks;  // [steps * layers]

  const BlockMask& at(int step, int layer) const { return masks[step * layers + layer]; }
  BlockMask& at(int step, int layer) { return masks[step * layers + layer]; }
};

}  // namespace dbsp
