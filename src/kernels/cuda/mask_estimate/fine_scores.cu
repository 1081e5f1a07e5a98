// Fine (M x 1) estimation scores: every pooled query block against every single key of its head,
// s[head][q_block][key] = scale * pooled_q . k, a batched fp32 GEMM reading K in place (16-bit,
// [seq, heads, head_dim]). 128 x 128 output tiles, 8 x 8 per thread, as block_scores.cu.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/mask_estimate/kernels.hpp"

namespace dbsp::cuda::detail {
namespace {

constexpr int kTile = 128;
constexpr int kDepth = 8;

__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(float x) { return x; }

template <class Element>
__global__ void __launch_bounds__(256)
    fine_scores_kernel(const float* pooled_q, const Element* k, int heads, int q_blocks, int seq_k,
                       int head_dim, float scale, float* scores) {
  __shared__ __align__(16) float q_tile[kDepth][kTile];
  __shared__ __align__(16) float k_tile[kDepth][kTile];
  const int head = blockIdx.z;
  const int row0 = blockIdx.y * kTile;
  const int col0 = blockIdx.x * kTile;
  const int tx = threadIdx.x % 16;
  const int ty = threadIdx.x / 16;
  const float* q = pooled_q + int64_t{head} * q_blocks * head_dim;
  float acc[8][8] = {};
  for (int d0 = 0; d0 < head_dim; d0 += kDepth) {
    for (int i = threadIdx.x; i < kTile * kDepth; i += blockDim.x) {
      const int r = i / kDepth;
      const int c = i % kDepth;
      const bool in_depth = d0 + c < head_dim;
      q_tile[c][r] =
          (row0 + r < q_blocks && in_depth) ? q[int64_t{row0 + r} * head_dim + d0 + c] : 0.f;
      k_tile[c][r] = (col0 + r < seq_k && in_depth)
                         ? to_float(k[(int64_t{col0 + r} * heads + head) * head_dim + d0 + c])
                         : 0.f;
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
  float* out = scores + int64_t{head} * q_blocks * seq_k;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int row = row0 + ty * 8 + i;
    if (row >= q_blocks) break;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int col = col0 + tx * 8 + j;
      if (col < seq_k) out[int64_t{row} * seq_k + col] = acc[i][j] * scale;
    }
  }
}

}  // namespace

void launch_fine_scores(DType dtype, const float* pooled_q, const void* k, int heads, int q_blocks,
                        int64_t seq_k, int head_dim, float scale, float* scores,
                        cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((seq_k + kTile - 1) / kTile),
                  (q_blocks + kTile - 1) / kTile, heads);
  const int n = static_cast<int>(seq_k);
  switch (dtype) {
    case DType::bf16:
      fine_scores_kernel<<<grid, 256, 0, stream>>>(pooled_q, static_cast<const __nv_bfloat16*>(k),
                                                   heads, q_blocks, n, head_dim, scale, scores);
      break;
    case DType::fp16:
      fine_scores_kernel<<<grid, 256, 0, stream>>>(pooled_q, static_cast<const __half*>(k), heads,
                                                   q_blocks, n, head_dim, scale, scores);
      break;
    case DType::fp32:
      fine_scores_kernel<<<grid, 256, 0, stream>>>(pooled_q, static_cast<const float*>(k), heads,
                                                   q_blocks, n, head_dim, scale, scores);
      break;
  }
  DBSP_CUDA_CHECK_LAUNCH();
}

}  // namespace dbsp::cuda::detail
