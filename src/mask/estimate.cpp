// Mask estimation from Q and K (SPEC 1a): mean-pooled blocks scored with a softmax, then per query
// block the smallest set of top-scoring key blocks (or single keys) that holds `tau` of the mass.
#include "dbsp/estimate.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numeric>
#include <vector>

#include "dbsp/error.hpp"

namespace dbsp {
namespace {

void validate(const float* q, const float* k, int64_t seq_q, int64_t seq_k, int heads, int head_dim,
              const EstimateOptions& options) {
  require(seq_q > 0 && seq_k > 0, "estimate: sequence lengths must be > 0, got seq_q=", seq_q,
          " seq_k=", seq_k);
  require(heads > 0 && head_dim > 0, "estimate: heads and head_dim must be > 0, got heads=", heads,
          " head_dim=", head_dim);
  require(q != nullptr && k != nullptr, "estimate: q and k must not be null");
  require(options.block_q > 0 && options.block_k > 0,
          "estimate: block sizes must be > 0, got block_q=", options.block_q,
          " block_k=", options.block_k);
  // Written so that NaN fails too.
  require(options.tau > 0.0 && options.tau <= 1.0, "estimate: tau must be in (0, 1], got ",
          options.tau);
  require(std::isfinite(options.scale) && options.scale >= 0.0,
          "estimate: scale must be finite and >= 0 (0 means 1/sqrt(head_dim)), got ",
          options.scale);
}

double softmax_scale(const EstimateOptions& options, int head_dim) {
  return options.scale > 0.0 ? options.scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
}

// Mean of each block of `block` tokens of one head: [blocks][head_dim]. The short last block is
// averaged over its true size so that it scores like the others.
std::vector<double> mean_pool(const float* x, int64_t seq, int heads, int head_dim, int head,
                              int block) {
  const int64_t blocks = (seq + block - 1) / block;
  std::vector<double> pooled(static_cast<size_t>(blocks) * head_dim, 0.0);
  for (int64_t t = 0; t < seq; ++t) {
    const float* row = x + (t * heads + head) * int64_t{head_dim};
    double* out = pooled.data() + (t / block) * head_dim;
    for (int d = 0; d < head_dim; ++d) out[d] += row[d];
  }
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t size = std::min<int64_t>(block, seq - b * block);
    double* out = pooled.data() + b * head_dim;
    for (int d = 0; d < head_dim; ++d) out[d] /= static_cast<double>(size);
  }
  return pooled;
}

double dot(const double* a, const double* b, int n) {
  double sum = 0.0;
  for (int d = 0; d < n; ++d) sum += a[d] * b[d];
  return sum;
}

// Candidates of one row ordered by descending score, ties to the lower index (deterministic), and
// how many of them are needed to reach `tau` of the softmax mass. tau == 1 keeps every candidate
// with nonzero mass, so that rounding in the running sum cannot drop (or add) any.
class TopMass {
 public:
  int64_t select(const std::vector<double>& scores, double tau) {
    const int64_t n = static_cast<int64_t>(scores.size());
    order_.resize(n);
    std::iota(order_.begin(), order_.end(), 0);
    std::sort(order_.begin(), order_.end(), [&](int32_t a, int32_t b) {
      return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
    });
    const double top = scores[order_[0]];
    weights_.resize(n);
    double total = 0.0;
    for (int64_t r = 0; r < n; ++r) {
      weights_[r] = std::exp(scores[order_[r]] - top);
      total += weights_[r];
    }
    if (tau >= 1.0) {
      int64_t count = 0;
      while (count < n && weights_[count] > 0.0) ++count;
      return count;
    }
    double kept = 0.0;
    for (int64_t r = 0; r < n; ++r) {
      kept += weights_[r];
      if (kept >= tau * total) return r + 1;
    }
    return n;
  }
  const std::vector<int32_t>& order() const { return order_; }

 private:
  std::vector<int32_t> order_;
  std::vector<double> weights_;
};

// Key blocks that overlap query block i's tokens (self-attention only: seq_q == seq_k).
void for_each_diagonal_block(int64_t q_block, int64_t seq, int block_q, int block_k,
                             const auto& visit) {
  const int64_t first_token = q_block * block_q;
  const int64_t last_token = std::min<int64_t>(first_token + block_q, seq) - 1;
  for (int64_t j = first_token / block_k; j <= last_token / block_k; ++j) visit(j);
}

}  // namespace

BlockMask estimate_block_mask(const float* q, const float* k, int64_t seq_q, int64_t seq_k,
                              int heads, int head_dim, const EstimateOptions& options) {
  validate(q, k, seq_q, seq_k, heads, head_dim, options);
  const MaskGeometry geometry{seq_q, seq_k, options.block_q, options.block_k};
  BlockMask mask(heads, geometry);
  const int q_blocks = geometry.q_blocks();
  const int k_blocks = geometry.k_blocks();
  const double scale = softmax_scale(options, head_dim);
  const bool diagonal = options.keep_diagonal && seq_q == seq_k;

#pragma omp parallel for schedule(dynamic)
  for (int h = 0; h < heads; ++h) {
    const std::vector<double> q_pool = mean_pool(q, seq_q, heads, head_dim, h, options.block_q);
    const std::vector<double> k_pool = mean_pool(k, seq_k, heads, head_dim, h, options.block_k);
    std::vector<double> scores(k_blocks);
    TopMass top;
    for (int i = 0; i < q_blocks; ++i) {
      const double* qi = q_pool.data() + static_cast<size_t>(i) * head_dim;
      for (int j = 0; j < k_blocks; ++j) {
        scores[j] = scale * dot(qi, k_pool.data() + static_cast<size_t>(j) * head_dim, head_dim);
      }
      const int64_t count = top.select(scores, options.tau);
      // Each head writes only its own rows, so the threads never share a word.
      for (int64_t r = 0; r < count; ++r) mask.set(h, i, top.order()[r]);
      if (diagonal) {
        for_each_diagonal_block(i, seq_q, options.block_q, options.block_k,
                                [&](int64_t j) { mask.set(h, i, static_cast<int>(j)); });
      }
      for (int sink : options.sink_blocks) {
        if (sink >= 0 && sink < k_blocks) mask.set(h, i, sink);
      }
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
  const auto keep_block = [&](std::vector<int32_t>& keys, int64_t block) {
    const int64_t end = std::min<int64_t>((block + 1) * options.block_k, seq_k);
    for (int64_t t = block * options.block_k; t < end; ++t) keys.push_back(static_cast<int32_t>(t));
  };

  std::vector<std::vector<int32_t>> rows(static_cast<size_t>(heads) * q_blocks);
#pragma omp parallel for schedule(dynamic)
  for (int h = 0; h < heads; ++h) {
    const std::vector<double> q_pool = mean_pool(q, seq_q, heads, head_dim, h, options.block_q);
    std::vector<double> key(head_dim);
    std::vector<double> scores(seq_k);
    TopMass top;
    for (int i = 0; i < q_blocks; ++i) {
      const double* qi = q_pool.data() + static_cast<size_t>(i) * head_dim;
      for (int64_t t = 0; t < seq_k; ++t) {
        const float* kt = k + (t * heads + h) * int64_t{head_dim};
        for (int d = 0; d < head_dim; ++d) key[d] = kt[d];
        scores[t] = scale * dot(qi, key.data(), head_dim);
      }
      const int64_t count = top.select(scores, options.tau);
      std::vector<int32_t>& keys = rows[static_cast<size_t>(h) * q_blocks + i];
      keys.assign(top.order().begin(), top.order().begin() + count);
      if (diagonal) {
        for_each_diagonal_block(i, seq_q, options.block_q, options.block_k,
                                [&](int64_t j) { keep_block(keys, j); });
      }
      for (int sink : options.sink_blocks) {
        if (sink >= 0 && sink < k_blocks) keep_block(keys, sink);
      }
      std::sort(keys.begin(), keys.end());
      keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
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
