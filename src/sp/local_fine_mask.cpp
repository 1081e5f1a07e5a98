// local_fine_mask: one pass to count each row's keys in the step's blocks, one to renumber them.
#include "sp/local_fine_mask.hpp"

#include <algorithm>
#include <utility>

#include "dbsp/error.hpp"

namespace dbsp::sp {

LocalFineMask local_fine_mask(const FineMask& mask, const std::vector<int>& heads,
                              const std::vector<int>& q_blocks, const std::vector<int>& key_blocks,
                              const BlockLayout& key_layout) {
  const MaskGeometry& geometry = mask.geometry();
  const int64_t block_q = geometry.block_q, block_k = geometry.block_k;
  const int k_blocks = geometry.k_blocks();
  require(key_layout.blocks() == static_cast<int>(key_blocks.size()),
          "local_fine_mask: ", key_blocks.size(), " key blocks but a step layout of ",
          key_layout.blocks());
  // Start of each global key block in the step buffer; -1: not in this step.
  std::vector<int64_t> local_start(static_cast<size_t>(k_blocks), -1);
  for (size_t n = 0; n < key_blocks.size(); ++n) {
    const int j = key_blocks[n];
    require(j >= 0 && j < k_blocks && (n == 0 || key_blocks[n - 1] < j),
            "local_fine_mask: key blocks must be ascending and inside [0, ", k_blocks, ")");
    const int64_t size = std::min(geometry.seq_k, (j + 1) * block_k) - j * block_k;
    require(key_layout.size(static_cast<int>(n)) == size, "local_fine_mask: key block ", j,
            " holds ", size, " keys but the step layout gives it ",
            key_layout.size(static_cast<int>(n)));
    local_start[j] = key_layout.start[n];
  }
  int64_t seq_q = 0;
  for (int i : q_blocks) {
    require(i >= 0 && i < mask.q_blocks(), "local_fine_mask: query block ", i, " outside [0, ",
            mask.q_blocks(), ")");
    seq_q += std::min(geometry.seq_q, (i + 1) * block_q) - i * block_q;
  }
  for (int h : heads) {
    require(h >= 0 && h < mask.heads(), "local_fine_mask: head ", h, " outside [0, ", mask.heads(),
            ")");
  }

  const int64_t row_blocks = static_cast<int64_t>(q_blocks.size());
  const int64_t rows = static_cast<int64_t>(heads.size()) * row_blocks;
  const std::vector<int64_t>& offset = mask.row_offset();
  const std::vector<int32_t>& keys = mask.key_index();
  auto global_row = [&](int64_t r) {
    return int64_t{heads[r / row_blocks]} * mask.q_blocks() + q_blocks[r % row_blocks];
  };
  // Pass 1: per row the keys in the step's blocks, and the blocks they cover (a row's keys are
  // sorted, so a block's keys are consecutive).
  std::vector<int64_t> row_offset(static_cast<size_t>(rows) + 1, 0);
  std::vector<int64_t> row_covering(static_cast<size_t>(rows), 0);
  const bool parallel = offset.back() > (int64_t{1} << 16);
#pragma omp parallel for schedule(dynamic, 64) if (parallel)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t g = global_row(r);
    int64_t count = 0, covering = 0, last_block = -1;
    for (int64_t e = offset[g]; e < offset[g + 1]; ++e) {
      const int64_t block = keys[e] / block_k;
      if (local_start[block] < 0) continue;
      ++count;
      covering += block != last_block;
      last_block = block;
    }
    row_offset[r + 1] = count;
    row_covering[r] = covering;
  }
  LocalFineMask local;
  for (int64_t r = 0; r < rows; ++r) {
    row_offset[r + 1] += row_offset[r];
    local.blocks += row_covering[r];
  }
  // Pass 2: the keys, renumbered to the step buffer's tokens.
  std::vector<int32_t> key_index(static_cast<size_t>(row_offset.back()));
#pragma omp parallel for schedule(dynamic, 64) if (parallel)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t g = global_row(r);
    int32_t* out = key_index.data() + row_offset[r];
    for (int64_t e = offset[g]; e < offset[g + 1]; ++e) {
      const int64_t block = keys[e] / block_k;
      if (local_start[block] < 0) continue;
      *out++ = static_cast<int32_t>(local_start[block] + keys[e] - block * block_k);
    }
  }
  const MaskGeometry local_geometry{seq_q, key_layout.tokens(), geometry.block_q, geometry.block_k};
  local.mask = FineMask(static_cast<int>(heads.size()), local_geometry, std::move(row_offset),
                        std::move(key_index));
  return local;
}

}  // namespace dbsp::sp
