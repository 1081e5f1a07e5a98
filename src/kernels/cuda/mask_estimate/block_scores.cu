// Pooled block scores for mask estimation: every pooled query block against every pooled key
// block of its head, through the fp32 score tile of score_tile.cuh.
#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/mask_estimate/kernels.hpp"
#include "kernels/cuda/mask_estimate/score_tile.cuh"

namespace dbsp::cuda::detail {
namespace {

__global__ void __launch_bounds__(kScoreThreads)
    block_scores_kernel(const float* pooled_q, const float* pooled_k, int q_blocks, int k_blocks,
                        int head_dim, float scale, float* scores) {
  const int head = blockIdx.z;
  const float* k = pooled_k + int64_t{head} * k_blocks * head_dim;
  const auto key_element = [=](int key, int d0, int c) {
    return k[int64_t{key} * head_dim + d0 + c];
  };
  score_tile(pooled_q, key_element, q_blocks, k_blocks, head_dim, scale, scores);
}

}  // namespace

void launch_block_scores(const float* pooled_q, const float* pooled_k, int heads, int q_blocks,
                         int k_blocks, int head_dim, float scale, float* scores,
                         cudaStream_t stream) {
  block_scores_kernel<<<score_grid(q_blocks, k_blocks, heads), kScoreThreads, 0, stream>>>(
      pooled_q, pooled_k, q_blocks, k_blocks, head_dim, scale, scores);
  DBSP_CUDA_CHECK_LAUNCH();
}

}  // namespace dbsp::cuda::detail
