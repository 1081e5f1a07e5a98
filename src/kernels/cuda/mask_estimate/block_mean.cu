// Mean pooling of Q or K blocks for mask estimation: one CTA per (block, head). Reading Q and K
// once is this step's floor, so each thread loads 16-byte chunks (8 channels of one token) and
// the CTA's token lanes are summed in shared memory; fp32 throughout.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/mask_estimate/kernels.hpp"

namespace dbsp::cuda::detail {
namespace {

constexpr int kThreads = 128;

__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(float x) { return x; }

// Any head_dim, any element type: one thread per channel.
template <class Element>
__global__ void block_mean_scalar_kernel(const Element* x, int64_t seq, int heads, int head_dim,
                                         int block, float* pooled) {
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

// 16-bit elements, head_dim a multiple of 8 and at most kThreads * 8 / 2.
template <class Element>
__global__ void __launch_bounds__(kThreads)
    block_mean_vector_kernel(const Element* x, int64_t seq, int heads, int head_dim, int block,
                             float* pooled) {
  extern __shared__ float partial[];  // [token lanes][head_dim]
  const int b = blockIdx.x;
  const int head = blockIdx.y;
  const int chunks = head_dim / 8;
  const int lanes = kThreads / chunks;
  const int chunk = threadIdx.x % chunks;
  const int lane = threadIdx.x / chunks;
  const int64_t begin = int64_t{b} * block;
  const int64_t end = begin + block < seq ? begin + block : seq;
  float sum[8] = {};
  if (lane < lanes) {
#pragma unroll 4
    for (int64_t t = begin + lane; t < end; t += lanes) {
      const uint4 raw =
          *reinterpret_cast<const uint4*>(x + (t * heads + head) * head_dim + chunk * 8);
      const Element* e = reinterpret_cast<const Element*>(&raw);
#pragma unroll
      for (int i = 0; i < 8; ++i) sum[i] += to_float(e[i]);
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) partial[lane * head_dim + chunk * 8 + i] = sum[i];
  }
  __syncthreads();
  for (int c = threadIdx.x; c < head_dim; c += kThreads) {
    float total = 0.f;
    for (int l = 0; l < lanes; ++l) total += partial[l * head_dim + c];
    pooled[(int64_t{head} * gridDim.x + b) * head_dim + c] =
        total / static_cast<float>(end - begin);
  }
}

template <class Element>
void launch_for(const Element* x, int64_t seq, int heads, int head_dim, int block, int blocks,
                float* pooled, cudaStream_t stream) {
  const dim3 grid(blocks, heads);
  const bool vector = sizeof(Element) == 2 && head_dim % 8 == 0 && head_dim / 8 <= kThreads / 2;
  if (vector) {
    const int lanes = kThreads / (head_dim / 8);
    block_mean_vector_kernel<<<grid, kThreads, lanes * head_dim * sizeof(float), stream>>>(
        x, seq, heads, head_dim, block, pooled);
  } else {
    const int threads = head_dim < kThreads ? head_dim : kThreads;
    block_mean_scalar_kernel<<<grid, threads, 0, stream>>>(x, seq, heads, head_dim, block, pooled);
  }
  DBSP_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_block_mean(DType dtype, const void* x, int64_t seq, int heads, int head_dim, int block,
                       int blocks, float* pooled, cudaStream_t stream) {
  switch (dtype) {
    case DType::bf16:
      return launch_for(static_cast<const __nv_bfloat16*>(x), seq, heads, head_dim, block, blocks,
                        pooled, stream);
    case DType::fp16:
      return launch_for(static_cast<const __half*>(x), seq, heads, head_dim, block, blocks, pooled,
                        stream);
    case DType::fp32:
      return launch_for(static_cast<const float*>(x), seq, heads, head_dim, block, blocks, pooled,
                        stream);
  }
}

}  // namespace dbsp::cuda::detail
