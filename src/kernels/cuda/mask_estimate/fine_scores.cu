// Fine (M x 1) estimation scores: every pooled query block against every single key of its head,
// s[head][q_block][key] = scale * pooled_q . k, reading K in place (16-bit, [seq, heads,
// head_dim]) through the fp32 score tile of score_tile.cuh.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/mask_estimate/kernels.hpp"
#include "kernels/cuda/mask_estimate/score_tile.cuh"

namespace dbsp::cuda::detail {
namespace {

__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(float x) { return x; }

template <class Element>
__global__ void __launch_bounds__(kScoreThreads)
    fine_scores_kernel(const float* pooled_q, const Element* k, int heads, int q_blocks, int seq_k,
                       int head_dim, float scale, float* scores) {
  const int head = blockIdx.z;
  const auto key_element = [=](int key, int d0, int c) {
    return to_float(k[(int64_t{key} * heads + head) * head_dim + d0 + c]);
  };
  score_tile(pooled_q, key_element, q_blocks, seq_k, head_dim, scale, scores);
}

}  // namespace

void launch_fine_scores(DType dtype, const float* pooled_q, const void* k, int heads, int q_blocks,
                        int64_t seq_k, int head_dim, float scale, float* scores,
                        cudaStream_t stream) {
  const dim3 grid = score_grid(q_blocks, seq_k, heads);
  const int n = static_cast<int>(seq_k);
  switch (dtype) {
    case DType::bf16:
      fine_scores_kernel<<<grid, kScoreThreads, 0, stream>>>(
          pooled_q, static_cast<const __nv_bfloat16*>(k), heads, q_blocks, n, head_dim, scale,
          scores);
      break;
    case DType::fp16:
      fine_scores_kernel<<<grid, kScoreThreads, 0, stream>>>(
          pooled_q, static_cast<const __half*>(k), heads, q_blocks, n, head_dim, scale, scores);
      break;
    case DType::fp32:
      fine_scores_kernel<<<grid, kScoreThreads, 0, stream>>>(
          pooled_q, static_cast<const float*>(k), heads, q_blocks, n, head_dim, scale, scores);
      break;
  }
  DBSP_CUDA_CHECK_LAUNCH();
}

}  // namespace dbsp::cuda::detail
