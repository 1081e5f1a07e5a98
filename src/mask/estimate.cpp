// Mask estimation from Q and K (SPEC 1a): mean-pooled blocks scored with a softmax, then per query
// block the smallest set of top-scoring key blocks (or single keys) that holds `tau` of the mass.
#include "dbsp/estimate.hpp"

#include <algorithm>
#include <cstddef>
#include <vector>

#include "dbsp/error.hpp"
#include "mask/estimate_parts.hpp"

namespace dbsp {

using estimate_parts::dot;
using estimate_parts::for_each_diagonal_block;
using estimate_parts::mean_pool;
using estimate_parts::softmax_scale;

namespace {
void validate(const float* q, const float* k, int64_t seq_q, int64_t seq_k, int heads, int head_dim,
              const EstimateOptions& options) {
  estimate_parts::validate(seq_q, seq_k, heads, head_dim, options);
  require(q != nullptr && k != nullptr, "estimate: q and k must not be null");
}
}  // namespace

BlockMask estimate_block_mask(const float* q, const float* k, int64_t seq_q, int64_t seq_k,
                              int heads, int head_dim, const EstimateOptions& options) {
  validate(q, k, seq_q, seq_k, heads, head_dim, options);
  const MaskGeometry geometry{seq_q, seq_k, options.block_q, options.block_k};
  BlockMask mask(heads, geometry);
  const int q_blocks = geometry.q_blocks();
#pragma omp parallel for schedule(dynamic)
  for (int h = 0; h < heads; ++h) {
    const std::vector<double> q_pool = mean_pool(q, seq_q, heads, head_dim, h, options.block_q);
    const std::vector<double> k_pool = mean_pool(k, seq_k, heads, head_dim, h, options.block_k);
    estimate_parts::BlockSelector selector(geometry, head_dim, options);
    for (int i = 0; i < q_blocks; ++i) {
      // Each head writes only its own rows, so the threads never share a word.
      selector.select(q_pool.data() + static_cast<size_t>(i) * head_dim, k_pool.data(), head_dim, i,
                      mask.row_bits(h, i));
    }
  }
  return mask;
}

FineMask estimate_fine_mask(const float* q, const float* k, int64_t seq_q, int64_t seq_k, int heads,
                            int head_dim, const EstimateOptions& options) {
  validate(q, k, seq_q, seq_k, heads, head_dim, options);
  const MaskGeometry geometry{seq_q, seq_k, options.block_q, options.block_k};
  const int q_blocks = geometry.q_blocks();
  const int k_blocks = geometry.k_blocks();
  const double scale = softmax_scale(options, head_dim);
  const bool diagonal = options.keep_diagonal && seq_q == seq_k;
  std::vector<std::vector<int32_t>> rows(static_cast<size_t>(heads) * q_blocks);
#pragma omp parallel for schedule(dynamic)
  for (int h = 0; h < heads; ++h) {
    const std::vector<double> q_pool = mean_pool(q, seq_q, heads, head_dim, h, options.block_q);
    // This head's keys, contiguous: every query block sweeps all of them.
    std::vector<float> keys(static_cast<size_t>(seq_k) * head_dim);
    for (int64_t t = 0; t < seq_k; ++t) {
      const float* kt = k + (t * heads + h) * int64_t{head_dim};
      std::copy(kt, kt + head_dim, keys.begin() + t * head_dim);
    }
    std::vector<double> scores(seq_k);
    std::vector<uint8_t> keep;
    estimate_parts::TopMass top;
    const auto keep_block = [&](int64_t block) {
      const int64_t end = std::min<int64_t>((block + 1) * options.block_k, seq_k);
      std::fill(keep.begin() + block * options.block_k, keep.begin() + end, uint8_t{1});
    };
    for (int i = 0; i < q_blocks; ++i) {
      const double* qi = q_pool.data() + static_cast<size_t>(i) * head_dim;
      for (int64_t t = 0; t < seq_k; ++t) {
        scores[t] = scale * dot(qi, keys.data() + t * head_dim, head_dim);
      }
      top.select(scores, options.tau, keep);
      if (diagonal) {
        for_each_diagonal_block(i, seq_q, options.block_q, options.block_k, keep_block);
      }
      for (int sink : options.sink_blocks) {
        if (sink >= 0 && sink < k_blocks) keep_block(sink);
      }
      std::vector<int32_t>& row = rows[static_cast<size_t>(h) * q_blocks + i];
      for (int64_t t = 0; t < seq_k; ++t) {
        if (keep[t]) row.push_back(static_cast<int32_t>(t));  // ascending by construction
      }
    }
  }

  std::vector<int64_t> row_offset(rows.size() + 1, 0);
  for (size_t r = 0; r < rows.size(); ++r) row_offset[r + 1] = row_offset[r] + rows[r].size();
  std::vector<int32_t> key_index;
  key_index.reserve(row_offset.back());
  for (const auto& keys : rows) key_index.insert(key_index.end(), keys.begin(), keys.end());
  return FineMask(heads, geometry, std::move(row_offset), std::move(key_index));
}

}  // namespace dbsp
