// Mask estimation from Q and K (SPEC 1a): mean-pooled blocks scored with a softmax, then per query
// block the smallest set of top-scoring key blocks (or single keys) that holds `tau` of the mass.
#include "dbsp/estimate.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
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

// Four independent partial sums: the dot products dominate the fine estimator, and one running
// sum would serialise on the add latency.
template <class T>
double dot(const double* a, const T* b, int n) {
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  int d = 0;
  for (; d + 4 <= n; d += 4) {
    s0 += a[d] * b[d];
    s1 += a[d + 1] * b[d + 1];
    s2 += a[d + 2] * b[d + 2];
    s3 += a[d + 3] * b[d + 3];
  }
  for (; d < n; ++d) s0 += a[d] * b[d];
  return (s0 + s1) + (s2 + s3);
}

// Top-p selection over one row of scores. Candidate j is kept iff the softmax mass of the
// candidates ranked before it (higher score, or equal score and lower index) is below tau of the
// total; tau == 1 keeps exactly the candidates with nonzero mass, so that rounding in a running
// sum cannot drop any. Linear time: scores are bucketed, and only the bucket where the running
// mass crosses tau is sorted.
class TopMass {
 public:
  // keep[j] = 1 for kept candidates, 0 otherwise.
  void select(const std::vector<double>& scores, double tau, std::vector<uint8_t>& keep) {
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

 private:
  static constexpr int kBuckets = 1024;
  std::vector<double> weights_;
  std::vector<int> bucket_;
  std::vector<double> bucket_mass_;
  std::vector<int32_t> crossing_;
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
    std::vector<uint8_t> keep;
    TopMass top;
    for (int i = 0; i < q_blocks; ++i) {
      const double* qi = q_pool.data() + static_cast<size_t>(i) * head_dim;
      for (int j = 0; j < k_blocks; ++j) {
        scores[j] = scale * dot(qi, k_pool.data() + static_cast<size_t>(j) * head_dim, head_dim);
      }
      top.select(scores, options.tau, keep);
      // Each head writes only its own rows, so the threads never share a word.
      for (int j = 0; j < k_blocks; ++j) {
        if (keep[j]) mask.set(h, i, j);
      }
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
    TopMass top;
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
