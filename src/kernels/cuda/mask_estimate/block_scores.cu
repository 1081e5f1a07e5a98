// Pooled block scores for mask estimation: a batched fp32 Q K^T over heads. 128 x 128 output
// tiles per CTA, 16 x 16 threads each owning an 8 x 8 patch read from shared memory with 16-byte
// loads. fp32 (not TF32) so the top-p cut sees the CPU estimator's scores up to summation order.
#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/mask_estimate/kernels.hpp"

namespace dbsp::cuda::detail {
namespace {

constexpr int kTile = 128;
constexpr int kDepth = 8;

__global__ void __launch_bounds__(256)
    block_scores_kernel(const float* pooled_q, const float* pooled_k, int q_blocks, int k_blocks,
                        int head_dim, float scale, float* scores) {
  __shared__ __align__(16) float q_tile[kDepth][kTile];
  __shared__ __align__(16) float k_tile[kDepth][kTile];
  const int head = blockIdx.z;
  const int row0 = blockIdx.y * kTile;
  const int col0 = blockIdx.x * kTile;
  const int tx = threadIdx.x % 16;
  const int ty = threadIdx.x / 16;
  const float* q = pooled_q + int64_t{head} * q_blocks * head_dim;
  const float* k = pooled_k + int64_t{head} * k_blocks * head_dim;
  float acc[8][8] = {};
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
      const float4 a0 = *reinterpret_cast<const float4*>(&q_tile[c][ty * 8]);
      const float4 a1 = *reinterpret_cast<const float4*>(&q_tile[c][ty * 8 + 4]);
      const float4 b0 = *reinterpret_cast<const float4*>(&k_tile[c][tx * 8]);
      const float4 b1 = *reinterpret_cast<const float4*>(&k_tile[c][tx * 8 + 4]);
      const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
  float* out = scores + int64_t{head} * q_blocks * k_blocks;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int row = row0 + ty * 8 + i;
    if (row >= q_blocks) break;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int col = col0 + tx * 8 + j;
      if (col < k_blocks) out[int64_t{row} * k_blocks + col] = acc[i][j] * scale;
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
