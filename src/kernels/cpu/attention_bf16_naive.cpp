// The plain bf16 block-sparse attention that bf16 kernels are measured against (attention.hpp):
// one query token at a time, scores and softmax in fp32, P rounded to bf16 for the P V product.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "dbsp/attention.hpp"
#include "kernels/cpu/attention_checks.hpp"

namespace dbsp {

void attention_block_sparse_bf16_naive(const AttentionProblem& problem, const BlockCsr& mask,
                                       const float* q, const float* k, const float* v, float* out) {
  constexpr const char* kCaller = "attention_block_sparse_bf16_naive";
  std::vector<float> lse(static_cast<size_t>(problem.batch * problem.heads * problem.seq_q()));
  cpu::checked_tensors(problem, q, k, v, out, lse.data(), kCaller);
  cpu::check_block_csr(problem, mask, kCaller);
  const int64_t H = problem.heads, D = problem.head_dim, Sq = problem.seq_q(), Sk = problem.seq_k();
  const float scale = static_cast<float>(problem.softmax_scale());
  const BlockLayout& q_layout = problem.q_layout;
  const BlockLayout& k_layout = problem.k_layout;
  const int64_t rows = problem.batch * H * q_layout.blocks();
#pragma omp parallel
  {
    std::vector<float> scores, acc(static_cast<size_t>(D));
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < rows; ++task) {
      const int q_block = static_cast<int>(task % q_layout.blocks());
      const int64_t head = (task / q_layout.blocks()) % H;
      const int64_t batch = task / (q_layout.blocks() * H);
      const std::span<const int32_t> blocks = mask.row(static_cast<int>(head), q_block);
      for (int64_t t = q_layout.start[q_block]; t < q_layout.start[q_block + 1]; ++t) {
        const float* qt = q + ((batch * Sq + t) * H + head) * D;
        float* ot = out + ((batch * Sq + t) * H + head) * D;
        scores.clear();
        float max_score = -std::numeric_limits<float>::infinity();
        for (int32_t j : blocks) {
          for (int64_t key = k_layout.start[j]; key < k_layout.start[j + 1]; ++key) {
            const float* kt = k + ((batch * Sk + key) * H + head) * D;
            float dot = 0;
            for (int64_t d = 0; d < D; ++d) dot += qt[d] * kt[d];
            scores.push_back(dot * scale);
            max_score = std::max(max_score, scores.back());
          }
        }
        std::fill(acc.begin(), acc.end(), 0.0f);
        float sum = 0;
        size_t at = 0;
        for (int32_t j : blocks) {
          for (int64_t key = k_layout.start[j]; key < k_layout.start[j + 1]; ++key) {
            const float p = std::exp(scores[at++] - max_score);
            sum += p;
            const float p16 = round_to_bf16(p);
            const float* vt = v + ((batch * Sk + key) * H + head) * D;
            for (int64_t d = 0; d < D; ++d) acc[d] += p16 * vt[d];
          }
        }
        for (int64_t d = 0; d < D; ++d) ot[d] = sum > 0 ? round_to_bf16(acc[d] / sum) : 0.0f;
      }
    }
  }
}

}  // namespace dbsp
