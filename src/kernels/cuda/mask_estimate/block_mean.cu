// Mean pooling of Q or K blocks for mask estimation: one CTA per (block, head), one thread per
// channel, summing the block's tokens in fp32 (coalesced across channels).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/mask_estimate/kernels.hpp"

namespace dbsp::cuda::detail {
namespace {

__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(float x) { return x; }

template <class Element>
__global__ void block_mean_kernel(const Element* x, int64_t seq, int heads, int head_dim, int block,
                                  float* pooled) {
  const int b = blockIdx.x;
  const int head = blockIdx.y;
  const int64_t begin = int64_t{b} * block;
  const int64_t end = begin + block < seq ? begin + block : seq;
  for (int c = threadIdx.x; c < head_dim; c += blockDim.x) {
    float sum = 0.f;
    for (int64_t t = begin; t < end; ++t) sum += to_float(x[(t * heads + head) * head_dim + c]);
    pooled[(int64_t{head} * gridDim.x + b) * head_dim + c] = sum / static_cast<float>(end - begin);
  }
}

}  // namespace

void launch_block_mean(DType dtype, const void* x, int64_t seq, int heads, int head_dim, int block,
                       int blocks, float* pooled, cudaStream_t stream) {
  const dim3 grid(blocks, heads);
  const int threads = head_dim < 128 ? head_dim : 128;
  switch (dtype) {
    case DType::bf16:
      block_mean_kernel<<<grid, threads, 0, stream>>>(static_cast<const __nv_bfloat16*>(x), seq,
                                                      heads, head_dim, block, pooled);
      break;
    case DType::fp16:
      block_mean_kernel<<<grid, threads, 0, stream>>>(static_cast<const __half*>(x), seq, heads,
                                                      head_dim, block, pooled);
      break;
    case DType::fp32:
      block_mean_kernel<<<grid, threads, 0, stream>>>(static_cast<const float*>(x), seq, heads,
                                                      head_dim, block, pooled);
      break;
  }
  DBSP_CUDA_CHECK_LAUNCH();
}

}  // namespace dbsp::cuda::detail
