// Block mean-pooling and per-query-block selection of kept key blocks (estimate_parts.hpp).
#include "mask/estimate_parts.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "dbsp/error.hpp"

namespace dbsp::estimate_parts {

void validate(int64_t seq_q, int64_t seq_k, int heads, int head_dim,
              const EstimateOptions& options) {
  require(seq_q > 0 && seq_k > 0, "estimate: sequence lengths must be > 0, got seq_q=", seq_q,
          " seq_k=", seq_k);
  require(heads > 0 && head_dim > 0, "estimate: heads and head_dim must be > 0, got heads=", heads,
          " head_dim=", head_dim);
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

std::vector<double> mean_pool(const float* x, int64_t tokens, int heads, int head_dim, int head,
                              int block) {
  const int64_t blocks = (tokens + block - 1) / block;
  std::vector<double> pooled(static_cast<size_t>(blocks) * head_dim, 0.0);
  for (int64_t t = 0; t < tokens; ++t) {
    const float* row = x + (t * heads + head) * int64_t{head_dim};
    double* out = pooled.data() + (t / block) * head_dim;
    for (int d = 0; d < head_dim; ++d) out[d] += row[d];
  }
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t size = std::min<int64_t>(block, tokens - b * block);
    double* out = pooled.data() + b * head_dim;
    for (int d = 0; d < head_dim; ++d) out[d] /= static_cast<double>(size);
  }
  return pooled;
}

std::vector<double> mean_pool_all_heads(const float* x, int64_t tokens, int heads, int head_dim,
                                        int block) {
  const int64_t blocks = (tokens + block - 1) / block;
  const int64_t row = int64_t{heads} * head_dim;
  std::vector<double> pooled(static_cast<size_t>(blocks * row), 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t end = std::min<int64_t>((b + 1) * block, tokens);
    double* out = pooled.data() + b * row;
    for (int64_t t = b * block; t < end; ++t) {
      const float* in = x + t * row;
      for (int64_t e = 0; e < row; ++e) out[e] += in[e];
    }
    const double size = static_cast<double>(end - b * block);
    for (int64_t e = 0; e < row; ++e) out[e] /= size;
  }
  return pooled;
}

void TopMass::select(const std::vector<double>& scores, double tau, std::vector<uint8_t>& keep) {
  const size_t n = scores.size();
  keep.assign(n, 0);
  const auto [low_it, high_it] = std::minmax_element(scores.begin(), scores.end());
  const double top = *high_it;
  weights_.resize(n);
  double total = 0.0;
  for (size_t j = 0; j < n; ++j) total += weights_[j] = std::exp(scores[j] - top);
  if (tau >= 1.0) {
    for (size_t j = 0; j < n; ++j) keep[j] = weights_[j] > 0.0;
    return;
  }
  // Bucket 0 holds the highest scores.
  const double range = top - *low_it;
  const double to_bucket = range > 0.0 ? kBuckets / range : 0.0;
  bucket_.resize(n);
  bucket_mass_.assign(kBuckets, 0.0);
  for (size_t j = 0; j < n; ++j) {
    bucket_[j] = std::min(kBuckets - 1, static_cast<int>((top - scores[j]) * to_bucket));
    bucket_mass_[bucket_[j]] += weights_[j];
  }
  const double goal = tau * total;
  double before = 0.0;  // mass of the buckets above the crossing one
  int crossing = 0;
  while (crossing < kBuckets - 1 && before + bucket_mass_[crossing] < goal) {
    before += bucket_mass_[crossing++];
  }
  crossing_.clear();
  for (size_t j = 0; j < n; ++j) {
    if (bucket_[j] < crossing) keep[j] = 1;
    if (bucket_[j] == crossing) crossing_.push_back(static_cast<int32_t>(j));
  }
  std::sort(crossing_.begin(), crossing_.end(), [&](int32_t a, int32_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  });
  for (int32_t j : crossing_) {
    if (before >= goal) break;
    keep[j] = 1;
    before += weights_[j];
  }
}

BlockSelector::BlockSelector(const MaskGeometry& geometry, int head_dim,
                             const EstimateOptions& options)
    : geometry_(geometry),
      head_dim_(head_dim),
      scale_(softmax_scale(options, head_dim)),
      tau_(options.tau),
      diagonal_(options.keep_diagonal && geometry.seq_q == geometry.seq_k),
      sinks_(options.sink_blocks),
      scores_(static_cast<size_t>(geometry.k_blocks())) {}

void BlockSelector::select(const double* pooled_q, const double* pooled_k, int64_t k_stride,
                           int q_block, uint64_t* row) {
  const int k_blocks = geometry_.k_blocks();
  for (int j = 0; j < k_blocks; ++j) {
    scores_[j] = scale_ * dot(pooled_q, pooled_k + j * k_stride, head_dim_);
  }
  top_.select(scores_, tau_, keep_);
  const auto set = [row](int64_t j) { row[j / 64] |= uint64_t{1} << (j % 64); };
  for (int j = 0; j < k_blocks; ++j) {
    if (keep_[j]) set(j);
  }
  if (diagonal_) {
    for_each_diagonal_block(q_block, geometry_.seq_q, geometry_.block_q, geometry_.block_k, set);
  }
  for (int sink : sinks_) {
    if (sink >= 0 && sink < k_blocks) set(sink);
  }
}

}  // namespace dbsp::estimate_parts
