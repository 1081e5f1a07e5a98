// Pooled block scores for mask estimation: a batched fp32 Q K^T over heads, 64 x 64 output tiles
// per CTA, 16 x 16 threads each owning a 4 x 4 strided patch (coalesced stores). fp32 so the
// top-p cut sees the same scores as the CPU estimator up to summation order.
#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/mask_estimate/kernels.hpp"

namespace dbsp::cuda::detail {
namespace {

constexpr int kTile = 64;
constexpr int kDepth = 16;

__global__ void block_scores_kernel(const float* pooled_q, const float* pooled_k, int q_blocks,
                                    int k_blocks, int head_dim, float scale, float* scores) {
  __shared__ float q_tile[kDepth][kTile + 1];
  __shared__ float k_tile[kDepth][kTile + 1];
  const int head = blockIdx.z;
  const int row0 = blockIdx.y * kTile;
  const int col0 = blockIdx.x * kTile;
  const int tx = threadIdx.x % 16;
  const int ty = threadIdx.x / 16;
  const float* q = pooled_q + int64_t{head} * q_blocks * head_dim;
  const float* k = pooled_k + int64_t{head} * k_blocks * head_dim;
  float acc[4][4] = {};
  for (int d0 = 0; d0 < head_dim; d0 += kDepth) {
    for (int i = threadIdx.x; i < kTile * kDepth; i += blockDim.x) {
      const int r = i / kDepth;
      const int c = i % kDepth;
      const bool in_depth = d0 + c < head_dim;
      q_tile[c][r] =
          (row0 + r < q_blocks && in_depth) ? q[int64_t{row0 + r} * head_dim + d0 + c] : 0.f;
      k_tile[c][r] =
          (col0 + r < k_blocks && in_depth) ? k[int64_t{col0 + r} * head_dim + d0 + c] : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int c = 0; c < kDepth; ++c) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        a[i] = q_tile[c][ty + 16 * i];
        b[i] = k_tile[c][tx + 16 * i];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
  float* out = scores + int64_t{head} * q_blocks * k_blocks;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int row = row0 + ty + 16 * i;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int col = col0 + tx + 16 * j;
      if (row < q_blocks && col < k_blocks) out[int64_t{row} * k_blocks + col] = acc[i][j] * scale;
    }
  }
}

}  // namespace

void launch_block_scores(const float* pooled_q, const float* pooled_k, int heads, int q_blocks,
                         int k_blocks, int head_dim, float scale, float* scores,
                         cudaStream_t stream) {
  const dim3 grid((k_blocks + kTile - 1) / kTile, (q_blocks + kTile - 1) / kTile, heads);
  block_scores_kernel<<<grid, 256, 0, stream>>>(pooled_q, pooled_k, q_blocks, k_blocks, head_dim,
                                                scale, scores);
  DBSP_CUDA_CHECK_LAUNCH();
}

}  // namespace dbsp::cuda::detail
