// Device steps of mask estimation (SPEC 1a), launched in order by estimator.cpp: mean-pool the
// blocks of Q and K, score pooled blocks (fp32), then per query block select the top-p key
// blocks and write them as a fixed-capacity CSR row.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "dbsp/cuda_attention.hpp"

namespace dbsp::cuda::detail {

// pooled [heads][blocks][head_dim] fp32 = mean of each block's tokens of x [seq, heads, head_dim].
void launch_block_mean(DType dtype, const void* x, int64_t seq, int heads, int head_dim, int block,
                       int blocks, float* pooled, cudaStream_t stream);

// scores [heads][q_blocks][k_blocks] = scale * pooled_q . pooled_k.
void launch_block_scores(const float* pooled_q, const float* pooled_k, int heads, int q_blocks,
                         int k_blocks, int head_dim, float scale, float* scores,
                         cudaStream_t stream);

struct TopPConfig {
  int heads = 0;
  int q_blocks = 0;       // rows per head
  int first_q_block = 0;  // global index of each head's first row (rows of one sequence shard)
  int k_blocks = 0;
  int block_q = 64;
  int block_k = 64;
  int64_t seq_k = 0;
  float tau = 0.9f;
  bool keep_diagonal = true;
  int sink_count = 0;
  int sinks[8] = {};
};
constexpr int kMaxTopPKeyBlocks = 8192;

// Row r = head * q_blocks + q_block: kv_count[r], block_row_offset[r] = r * k_blocks, and the
// kept key blocks ascending in kv_index[r * k_blocks ...]. Row r is query block
// first_q_block + q_block of the sequence (for the diagonal).
void launch_top_p_rows(const TopPConfig& config, const float* scores, int32_t* kv_count,
                       int64_t* block_row_offset, int32_t* kv_index, cudaStream_t stream);

// Fine (M x 1) scores: scores [heads][q_blocks][seq_k] = scale * pooled_q . k for every key of
// k [seq_k, heads, head_dim] in `dtype`.
void launch_fine_scores(DType dtype, const float* pooled_q, const void* k, int heads, int q_blocks,
                        int64_t seq_k, int head_dim, float scale, float* scores,
                        cudaStream_t stream);

struct FineTopPConfig {
  int heads = 0;
  int q_blocks = 0;
  int seq_q = 0;
  int seq_k = 0;
  int block_q = 64;
  int block_k = 64;
  float tau = 0.9f;
  bool keep_diagonal = true;  // only meaningful when seq_q == seq_k (the caller decides)
  int sink_count = 0;
  int sinks[8] = {};
};

// Row r = head * q_blocks + q_block of `rows` holds seq_k scores on entry and the kept keys
// (ascending) on return: key_count[r] of them from key_row_offset[r] = r * seq_k.
void launch_fine_top_p_rows(const FineTopPConfig& config, float* rows, int32_t* key_count,
                            int64_t* key_row_offset, cudaStream_t stream);

}  // namespace dbsp::cuda::detail
