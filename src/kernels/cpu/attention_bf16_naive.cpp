// The plain bf16 attention that bf16 kernels are measured against (attention.hpp), block-sparse
// or fine: one query token at a time, scores and softmax in fp32, P rounded to bf16 for the P V
// product. Both masks walk their keys through a key cursor, so a fine mask holding whole blocks
// gives the block path's result bit for bit.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "dbsp/attention.hpp"
#include "kernels/cpu/attention_checks.hpp"
#include "kernels/cpu/key_cursors.hpp"

namespace dbsp {
namespace {

// cursor_of(head, q_block): a key cursor (key_cursors.hpp) over the keys of that mask row.
template <class CursorOf>
void naive_bf16(const AttentionProblem& problem, const float* q, const float* k, const float* v,
                float* out, const CursorOf& cursor_of) {
  const int64_t H = problem.heads, D = problem.head_dim, Sq = problem.seq_q(), Sk = problem.seq_k();
  const float scale = static_cast<float>(problem.softmax_scale());
  const BlockLayout& q_layout = problem.q_layout;
  const int64_t rows = problem.batch * H * q_layout.blocks();
#pragma omp parallel
  {
    std::vector<float> scores, acc(static_cast<size_t>(D));
    std::vector<int64_t> keys;
    constexpr int kTile = 64;
    int64_t tile[kTile];
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < rows; ++task) {
      const int q_block = static_cast<int>(task % q_layout.blocks());
      const int64_t head = (task / q_layout.blocks()) % H;
      const int64_t batch = task / (q_layout.blocks() * H);
      keys.clear();
      auto cursor = cursor_of(static_cast<int>(head), q_block);
      for (int n; (n = cursor.fill(tile, kTile)) > 0;) keys.insert(keys.end(), tile, tile + n);
      for (int64_t t = q_layout.start[q_block]; t < q_layout.start[q_block + 1]; ++t) {
        const float* qt = q + ((batch * Sq + t) * H + head) * D;
        float* ot = out + ((batch * Sq + t) * H + head) * D;
        scores.clear();
        float max_score = -std::numeric_limits<float>::infinity();
        for (int64_t key : keys) {
          const float* kt = k + ((batch * Sk + key) * H + head) * D;
          float dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += qt[d] * kt[d];
          scores.push_back(dot * scale);
          max_score = std::max(max_score, scores.back());
        }
        std::fill(acc.begin(), acc.end(), 0.0f);
        float sum = 0;
        for (size_t n = 0; n < keys.size(); ++n) {
          const float p = std::exp(scores[n] - max_score);
          sum += p;
          const float p16 = round_to_bf16(p);
          const float* vt = v + ((batch * Sk + keys[n]) * H + head) * D;
          for (int64_t d = 0; d < D; ++d) acc[d] += p16 * vt[d];
        }
        for (int64_t d = 0; d < D; ++d) ot[d] = sum > 0 ? round_to_bf16(acc[d] / sum) : 0.0f;
      }
    }
  }
}

// The tensor checks of the other kernels (the naive paths write no LSE: a scratch one stands in).
void check_naive_tensors(const AttentionProblem& problem, const float* q, const float* k,
                         const float* v, float* out, const char* caller) {
  std::vector<float> lse(static_cast<size_t>(problem.batch * problem.heads * problem.seq_q()));
  cpu::checked_tensors(problem, q, k, v, out, lse.data(), caller);
}

}  // namespace

void attention_block_sparse_bf16_naive(const AttentionProblem& problem, const BlockCsr& mask,
                                       const float* q, const float* k, const float* v, float* out) {
  constexpr const char* kCaller = "attention_block_sparse_bf16_naive";
  check_naive_tensors(problem, q, k, v, out, kCaller);
  cpu::check_block_csr(problem, mask, kCaller);
  naive_bf16(problem, q, k, v, out, [&](int head, int q_block) {
    return cpu::BlockKeyCursor(problem.k_layout, mask.row(head, q_block));
  });
}

void attention_fine_bf16_naive(const AttentionProblem& problem, const FineMask& mask,
                               const float* q, const float* k, const float* v, float* out) {
  constexpr const char* kCaller = "attention_fine_bf16_naive";
  check_naive_tensors(problem, q, k, v, out, kCaller);
  cpu::check_fine_mask(problem, mask, kCaller);
  naive_bf16(problem, q, k, v, out,
             [&](int head, int q_block) { return cpu::KeyListCursor(mask.keys(head, q_block)); });
}

}  // namespace dbsp
