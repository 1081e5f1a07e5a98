// CPU attention (OpenMP): dense, block-sparse and fine-grained, returning O and LSE, plus the LSE
// merge of partial results. The float64 instantiation is the oracle for every other path.
// Layouts: Q/O [batch, seq_q, heads, head_dim], K/V [batch, seq_k, heads, head_dim],
// LSE [batch, heads, seq_q] (natural log). Rows with no kept key give O = 0 and LSE = -inf.
#pragma once

#include <cstdint>

#include "dbsp/block_layout.hpp"
#include "dbsp/block_mask.hpp"
#include "dbsp/fine_mask.hpp"

namespace dbsp {

struct AttentionProblem {
  int64_t batch = 1;
  int64_t heads = 1;
  int64_t head_dim = 64;
  BlockLayout q_layout;  // query blocks (tokens of each block of the local Q tensor)
  BlockLayout k_layout;  // key blocks of the local K/V tensors
  double scale = 0.0;    // 0: 1/sqrt(head_dim)

  int64_t seq_q() const { return q_layout.tokens(); }
  int64_t seq_k() const { return k_layout.tokens(); }
  double softmax_scale() const;
  // Uniform blocks over the whole sequence.
  static AttentionProblem uniform(int64_t batch, int64_t seq_q, int64_t seq_k, int64_t heads,
                                  int64_t head_dim, int block_q = 64, int block_k = 64);
};

template <class T>
void attention_dense(const AttentionProblem& problem, const T* q, const T* k, const T* v, T* out,
                     T* lse);

// mask: heads == problem.heads, q_blocks/k_blocks match the layouts.
template <class T>
void attention_block_sparse(const AttentionProblem& problem, const BlockCsr& mask, const T* q,
                            const T* k, const T* v, T* out, T* lse);

// mask keys index tokens of the local K/V; q blocks follow problem.q_layout.
template <class T>
void attention_fine(const AttentionProblem& problem, const FineMask& mask, const T* q, const T* k,
                    const T* v, T* out, T* lse);

// float -> bf16 -> float, round to nearest even (what a bf16 device path sees of a host value).
float round_to_bf16(float value);

// The accuracy yardstick for bf16 kernels: block-sparse attention computed the plain way a bf16
// kernel would, from inputs already holding bf16 values: fp32 scores and softmax, probabilities
// rounded to bf16 before the P V product, fp32 accumulation, output rounded to bf16. A bf16 kernel
// is judged against the fp64 reference by comparing its error with this path's error. No LSE.
void attention_block_sparse_bf16_naive(const AttentionProblem& problem, const BlockCsr& mask,
                                       const float* q, const float* k, const float* v, float* out);
// The same over a fine mask (keys as in attention_fine): the yardstick of bf16 FG-Attn kernels.
void attention_fine_bf16_naive(const AttentionProblem& problem, const FineMask& mask,
                               const float* q, const float* k, const float* v, float* out);

// Merges a partial result into an accumulated one: out/lse hold the result over key set A,
// part_out/part_lse over a disjoint key set B; afterwards out/lse hold the result over A u B.
// out [rows, head_dim] with rows = batch*seq*heads in the Q layout; lse [batch, heads, seq].
template <class T>
void merge_partial(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, T* out, T* lse,
                   const T* part_out, const T* part_lse);

// Throws dbsp::Error naming `what` and the first index whose value is NaN or +-Inf. The attention
// functions do not scan their inputs (cost); callers that take outside data (CLI, runtime) do.
template <class T>
void check_finite(const T* data, int64_t count, const char* what);

}  // namespace dbsp
