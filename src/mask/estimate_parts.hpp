// The pieces of mask estimation (SPEC 1a) shared by the single-process estimator (estimate.cpp)
// and the sharded one (sp/sp_estimate.cpp): block mean-pooling of a token range and the selection
// of one query block's kept key blocks. Both estimators call exactly these, so their masks agree
// bit for bit.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "dbsp/block_mask.hpp"
#include "dbsp/estimate.hpp"

namespace dbsp::estimate_parts {

// Throws dbsp::Error on bad sizes, block sizes, tau or scale ("estimate: ..."). Pointers are the
// caller's to check (a rank of the sharded estimator may hold no token).
void validate(int64_t seq_q, int64_t seq_k, int heads, int head_dim,
              const EstimateOptions& options);

double softmax_scale(const EstimateOptions& options, int head_dim);

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

// Key blocks that overlap query block q_block's tokens (self-attention only: seq_q == seq_k).
template <class Visit>
void for_each_diagonal_block(int64_t q_block, int64_t seq, int block_q, int block_k,
                             const Visit& visit) {
  const int64_t first_token = q_block * block_q;
  const int64_t last_token = std::min<int64_t>(first_token + block_q, seq) - 1;
  for (int64_t j = first_token / block_k; j <= last_token / block_k; ++j) visit(j);
}

// Means of the blocks of `block` tokens of a token range [first_token, end_token) of a tensor
// [tokens, heads, head_dim]; `x` points at the range's first token, and blocks start there (a
// range begins on a block boundary). A short last block is averaged over its true size so that it
// scores like the others. One head: [blocks][head_dim]; all heads: [blocks][heads][head_dim] (the
// per-head sums in the same order, so each value equals the one-head result bit for bit).
std::vector<double> mean_pool(const float* x, int64_t tokens, int heads, int head_dim, int head,
                              int block);
std::vector<double> mean_pool_all_heads(const float* x, int64_t tokens, int heads, int head_dim,
                                        int block);

// Top-p selection over one row of scores. Candidate j is kept iff the softmax mass of the
// candidates ranked before it (higher score, or equal score and lower index) is below tau of the
// total; tau == 1 keeps exactly the candidates with nonzero mass, so that rounding in a running
// sum cannot drop any. Linear time: scores are bucketed, and only the bucket where the running
// mass crosses tau is sorted.
class TopMass {
 public:
  // keep[j] = 1 for kept candidates, 0 otherwise.
  void select(const std::vector<double>& scores, double tau, std::vector<uint8_t>& keep);

 private:
  static constexpr int kBuckets = 1024;
  std::vector<double> weights_;
  std::vector<int> bucket_;
  std::vector<double> bucket_mass_;
  std::vector<int32_t> crossing_;
};

// The kept key blocks of query blocks, one at a time: pooled scores, top-p, then the diagonal
// (blocks overlapping the query block's tokens, self-attention only) and the sink blocks. One per
// thread (it keeps scratch buffers).
class BlockSelector {
 public:
  BlockSelector(const MaskGeometry& geometry, int head_dim, const EstimateOptions& options);

  // ORs the kept key blocks of GLOBAL query block `q_block` into `row` (words_per_row words, LSB
  // of word 0 = key block 0, as BlockMask::row_bits). pooled_q: the block's pooled query
  // [head_dim]; key block j's pooled key starts at pooled_k + j * k_stride.
  void select(const double* pooled_q, const double* pooled_k, int64_t k_stride, int q_block,
              uint64_t* row);

 private:
  MaskGeometry geometry_;
  int head_dim_;
  double scale_;
  double tau_;
  bool diagonal_;
  std::vector<int> sinks_;
  std::vector<double> scores_;
  std::vector<uint8_t> keep_;
  TopMass top_;
};

}  // namespace dbsp::estimate_parts
