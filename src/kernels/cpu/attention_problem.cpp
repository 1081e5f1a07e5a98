// AttentionProblem helpers: uniform block layouts and the softmax scale default.
#include <cmath>

#include "dbsp/attention.hpp"
#include "dbsp/error.hpp"

namespace dbsp {

double AttentionProblem::softmax_scale() const {
  if (scale != 0.0) return scale;
  require(head_dim > 0, "AttentionProblem: head_dim must be > 0 for the default scale, got ",
          head_dim);
  return 1.0 / std::sqrt(static_cast<double>(head_dim));
}

AttentionProblem AttentionProblem::uniform(int64_t batch, int64_t seq_q, int64_t seq_k,
                                           int64_t heads, int64_t head_dim, int block_q,
                                           int block_k) {
  require(batch >= 0, "AttentionProblem::uniform: batch must be >= 0, got ", batch);
  require(heads > 0, "AttentionProblem::uniform: heads must be > 0, got ", heads);
  require(head_dim > 0, "AttentionProblem::uniform: head_dim must be > 0, got ", head_dim);
  AttentionProblem problem;
  problem.batch = batch;
  problem.heads = heads;
  problem.head_dim = head_dim;
  problem.q_layout = BlockLayout::uniform(seq_q, block_q);
  problem.k_layout = BlockLayout::uniform(seq_k, block_k);
  return problem;
}

}  // namespace dbsp
