// Mask estimation from Q and K (SPEC 1a): mean-pooled block scores, per-row top-p with threshold
// tau, diagonal and sink blocks always kept. Deterministic. The fine variant keeps single keys.
#pragma once

#include <cstdint>
#include <vector>

#include "dbsp/block_mask.hpp"
#include "dbsp/fine_mask.hpp"

namespace dbsp {

struct EstimateOptions {
  int block_q = 64;
  int block_k = 64;
  double tau = 0.9;                 // kept share of pooled softmax mass per query block
  std::vector<int> sink_blocks{0};  // key blocks always kept
  bool keep_diagonal = true;
  double scale = 0.0;               // 0: 1/sqrt(head_dim)
};

// q: [seq_q, heads, head_dim], k: [seq_k, heads, head_dim], row-major float (batch 1).
BlockMask estimate_block_mask(const float* q, const float* k, int64_t seq_q, int64_t seq_k,
                              int heads, int head_dim, const EstimateOptions& options);

// Fine (M x 1) variant: per query block, the pooled query scores every single key; keys are kept
// by descending score until their softmax share reaches tau; keys of the diagonal and sink blocks
// are always kept.
FineMask estimate_fine_mask(const float* q, const float* k, int64_t seq_q, int64_t seq_k,
                            int heads, int head_dim, const EstimateOptions& options);

}  // namespace dbsp
