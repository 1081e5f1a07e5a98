// Bit-packed block masks and their CSR form.
#include "dbsp/block_mask.hpp"

#include <bit>

#include "dbsp/block_layout.hpp"
#include "dbsp/error.hpp"

namespace dbsp {

MaskGeometry MaskGeometry::from_blocks(int q_blocks, int k_blocks, int block_q, int block_k) {
  return MaskGeometry{int64_t{q_blocks} * block_q, int64_t{k_blocks} * block_k, block_q, block_k};
}

std::span<const int32_t> BlockCsr::row(int head, int q_block) const {
  const int64_t r = int64_t{head} * q_blocks + q_block;
  return {kv_index.data() + row_offset[r], static_cast<size_t>(row_offset[r + 1] - row_offset[r])};
}

BlockMask::BlockMask(int heads, MaskGeometry geometry, bool fill)
    : heads_(heads), geometry_(geometry) {
  require(heads >= 0, "BlockMask: heads must be >= 0, got ", heads);
  require(geometry.block_q > 0 && geometry.block_k > 0, "BlockMask: block sizes must be > 0, got ",
          geometry.block_q, " x ", geometry.block_k);
  require(geometry.seq_q >= 0 && geometry.seq_k >= 0, "BlockMask: sequence lengths must be >= 0");
  q_blocks_ = geometry.q_blocks();
  k_blocks_ = geometry.k_blocks();
  words_per_row_ = (k_blocks_ + 63) / 64;
  bits_.assign(static_cast<size_t>(heads_) * q_blocks_ * words_per_row_, 0);
  if (fill && k_blocks_ > 0) {
    const uint64_t tail = (k_blocks_ % 64) ? ((uint64_t{1} << (k_blocks_ % 64)) - 1) : ~uint64_t{0};
    for (int64_t r = 0; r < int64_t{heads_} * q_blocks_; ++r) {
      uint64_t* row = bits_.data() + r * words_per_row_;
      for (int w = 0; w < words_per_row_; ++w) row[w] = ~uint64_t{0};
      row[words_per_row_ - 1] = tail;
    }
  }
}

const uint64_t* BlockMask::row_bits(int head, int q_block) const {
  return bits_.data() + (static_cast<size_t>(head) * q_blocks_ + q_block) * words_per_row_;
}
uint64_t* BlockMask::row_bits(int head, int q_block) {
  return bits_.data() + (static_cast<size_t>(head) * q_blocks_ + q_block) * words_per_row_;
}

bool BlockMask::get(int head, int q_block, int k_block) const {
  return (row_bits(head, q_block)[k_block >> 6] >> (k_block & 63)) & 1;
}

void BlockMask::set(int head, int q_block, int k_block, bool keep) {
  uint64_t& word = row_bits(head, q_block)[k_block >> 6];
  const uint64_t bit = uint64_t{1} << (k_block & 63);
  word = keep ? (word | bit) : (word & ~bit);
}

int BlockMask::row_kept(int head, int q_block) const {
  const uint64_t* row = row_bits(head, q_block);
  int count = 0;
  for (int w = 0; w < words_per_row_; ++w) count += std::popcount(row[w]);
  return count;
}

int64_t BlockMask::kept(int head) const {
  int64_t count = 0;
  const uint64_t* begin = row_bits(head, 0);
  const size_t words = static_cast<size_t>(q_blocks_) * words_per_row_;
  for (size_t w = 0; w < words; ++w) count += std::popcount(begin[w]);
  return count;
}

int64_t BlockMask::kept() const {
  int64_t count = 0;
  for (uint64_t word : bits_) count += std::popcount(word);
  return count;
}

std::vector<int64_t> BlockMask::kept_per_head() const {
  std::vector<int64_t> counts(heads_);
  for (int h = 0; h < heads_; ++h) counts[h] = kept(h);
  return counts;
}

double BlockMask::density() const {
  const double cells = double(heads_) * q_blocks_ * k_blocks_;
  return cells > 0 ? double(kept()) / cells : 0.0;
}

double BlockMask::density(int head) const {
  const double cells = double(q_blocks_) * k_blocks_;
  return cells > 0 ? double(kept(head)) / cells : 0.0;
}

double BlockMask::token_density() const {
  const auto q_layout = BlockLayout::uniform(geometry_.seq_q, geometry_.block_q);
  const auto k_layout = BlockLayout::uniform(geometry_.seq_k, geometry_.block_k);
  double kept_scores = 0;
  for (int h = 0; h < heads_; ++h) {
    for (int i = 0; i < q_blocks_; ++i) {
      const uint64_t* row = row_bits(h, i);
      for (int w = 0; w < words_per_row_; ++w) {
        for (uint64_t bits = row[w]; bits; bits &= bits - 1) {
          const int j = w * 64 + std::countr_zero(bits);
          kept_scores += double(q_layout.size(i)) * k_layout.size(j);
        }
      }
    }
  }
  const double cells = double(heads_) * geometry_.seq_q * geometry_.seq_k;
  return cells > 0 ? kept_scores / cells : 0.0;
}

BlockCsr BlockMask::to_csr() const {
  BlockCsr csr;
  csr.heads = heads_;
  csr.q_blocks = q_blocks_;
  csr.k_blocks = k_blocks_;
  const int64_t rows = int64_t{heads_} * q_blocks_;
  csr.kv_count.resize(rows);
  csr.row_offset.assign(rows + 1, 0);
  for (int64_t r = 0; r < rows; ++r) {
    const uint64_t* row = bits_.data() + r * words_per_row_;
    int count = 0;
    for (int w = 0; w < words_per_row_; ++w) count += std::popcount(row[w]);
    csr.kv_count[r] = count;
    csr.row_offset[r + 1] = csr.row_offset[r] + count;
  }
  csr.kv_index.resize(csr.row_offset.back());
  for (int64_t r = 0; r < rows; ++r) {
    const uint64_t* row = bits_.data() + r * words_per_row_;
    int32_t* out = csr.kv_index.data() + csr.row_offset[r];
    for (int w = 0; w < words_per_row_; ++w) {
      for (uint64_t bits = row[w]; bits; bits &= bits - 1) *out++ = w * 64 + std::countr_zero(bits);
    }
  }
  return csr;
}

BlockMask BlockMask::from_csr(const BlockCsr& csr, MaskGeometry geometry) {
  require(geometry.q_blocks() == csr.q_blocks && geometry.k_blocks() == csr.k_blocks,
          "BlockMask::from_csr: CSR has ", csr.q_blocks, " x ", csr.k_blocks,
          " blocks but the geometry has ", geometry.q_blocks(), " x ", geometry.k_blocks());
  const int64_t rows = int64_t{csr.heads} * csr.q_blocks;
  require(static_cast<int64_t>(csr.row_offset.size()) == rows + 1,
          "BlockMask::from_csr: row_offset must have heads * q_blocks + 1 entries");
  BlockMask mask(csr.heads, geometry);
  for (int h = 0; h < csr.heads; ++h) {
    for (int i = 0; i < csr.q_blocks; ++i) {
      for (int32_t j : csr.row(h, i)) {
        require(j >= 0 && j < csr.k_blocks, "BlockMask::from_csr: key block ", j,
                " out of range in row (head ", h, ", block ", i, ")");
        mask.set(h, i, j);
      }
    }
  }
  return mask;
}

BlockMask BlockMask::slice(std::span<const int> heads, std::span<const int> q_blocks,
                           std::span<const int> k_blocks) const {
  for (int i : q_blocks) {
    require(i >= 0 && i < q_blocks_, "BlockMask::slice: query block ", i, " out of range");
  }
  for (int j : k_blocks) {
    require(j >= 0 && j < k_blocks_, "BlockMask::slice: key block ", j, " out of range");
  }
  // The slice's geometry counts blocks, not tokens: short blocks may sit anywhere in it.
  MaskGeometry geometry = MaskGeometry::from_blocks(static_cast<int>(q_blocks.size()),
                                                    static_cast<int>(k_blocks.size()),
                                                    geometry_.block_q, geometry_.block_k);
  BlockMask out(static_cast<int>(heads.size()), geometry);
  for (size_t h = 0; h < heads.size(); ++h) {
    require(heads[h] >= 0 && heads[h] < heads_, "BlockMask::slice: head ", heads[h],
            " out of range");
    for (size_t i = 0; i < q_blocks.size(); ++i) {
      for (size_t j = 0; j < k_blocks.size(); ++j) {
        if (get(heads[h], q_blocks[i], k_blocks[j])) {
          out.set(static_cast<int>(h), static_cast<int>(i), static_cast<int>(j));
        }
      }
    }
  }
  return out;
}

}  // namespace dbsp
