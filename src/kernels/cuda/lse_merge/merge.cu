// LSE merge of partial attention results (ring steps): one warp per (batch, token, head) row
// rescales the accumulated and the partial output by their shares of the combined softmax mass.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>

#include "dbsp/cuda_attention.hpp"
#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/common/lse_weights.cuh"

namespace dbsp::cuda {
namespace {

__device__ __forceinline__ float load(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load(const __nv_bfloat16* p, int64_t i) {
  return __bfloat162float(p[i]);
}
__device__ __forceinline__ float load(const __half* p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void store(float* p, int64_t i, float x) { p[i] = x; }
__device__ __forceinline__ void store(__nv_bfloat16* p, int64_t i, float x) {
  p[i] = __float2bfloat16_rn(x);
}
__device__ __forceinline__ void store(__half* p, int64_t i, float x) { p[i] = __float2half_rn(x); }

template <class Out, class Part>
__global__ void merge_kernel(int64_t rows, int64_t seq, int heads, int head_dim, Out* out,
                             float* lse, const Part* part_out, const float* part_lse) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t{gridDim.x} * (blockDim.x / 32);
  for (int64_t row = blockIdx.x * int64_t{blockDim.x / 32} + threadIdx.x / 32; row < rows;
       row += warps) {
    // row = (batch * seq + token) * heads + head; lse index = (batch * heads + head) * seq + token
    const int64_t head = row % heads;
    const int64_t batch_token = row / heads;
    const int64_t batch = batch_token / seq;
    const int64_t token = batch_token % seq;
    const int64_t lse_index = (batch * heads + head) * seq + token;
    const detail::LseWeights weight = detail::lse_weights(lse[lse_index], part_lse[lse_index]);
    const int64_t base = row * head_dim;
    for (int c = lane; c < head_dim; c += 32)
      store(out, base + c, weight.a * load(out, base + c) + weight.b * load(part_out, base + c));
    __syncwarp();
    if (lane == 0) lse[lse_index] = weight.lse;
  }
}

template <class Out, class Part>
void launch(int64_t rows, int64_t seq, int heads, int head_dim, void* out, float* lse,
            const void* part_out, const float* part_lse, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((rows + kThreads / 32 - 1) / (kThreads / 32), 65536);
  merge_kernel<Out, Part><<<static_cast<int>(std::max<int64_t>(blocks, 1)), kThreads, 0, stream>>>(
      rows, seq, heads, head_dim, static_cast<Out*>(out), lse, static_cast<const Part*>(part_out),
      part_lse);
  DBSP_CUDA_CHECK_LAUNCH();
}

template <class Out>
void launch_for_part(DType part_dtype, int64_t rows, int64_t seq, int heads, int head_dim,
                     void* out, float* lse, const void* part_out, const float* part_lse,
                     cudaStream_t stream) {
  switch (part_dtype) {
    case DType::bf16:
      return launch<Out, __nv_bfloat16>(rows, seq, heads, head_dim, out, lse, part_out, part_lse,
                                        stream);
    case DType::fp16:
      return launch<Out, __half>(rows, seq, heads, head_dim, out, lse, part_out, part_lse, stream);
    case DType::fp32:
      return launch<Out, float>(rows, seq, heads, head_dim, out, lse, part_out, part_lse, stream);
  }
}

}  // namespace

void merge_partial(int64_t batch, int64_t seq, int heads, int head_dim, DType out_dtype, void* out,
                   float* lse, DType part_dtype, const void* part_out, const float* part_lse,
                   void* stream) {
  require(batch > 0 && seq > 0 && heads > 0 && head_dim > 0, "merge_partial needs a non-empty ",
          "shape, got batch ", batch, ", seq ", seq, ", heads ", heads, ", head_dim ", head_dim);
  require(out != nullptr && lse != nullptr && part_out != nullptr && part_lse != nullptr,
          "merge_partial needs device pointers for out, lse, part_out and part_lse");
  const int64_t rows = batch * seq * heads;
  const auto s = static_cast<cudaStream_t>(stream);
  switch (out_dtype) {
    case DType::bf16:
      return launch_for_part<__nv_bfloat16>(part_dtype, rows, seq, heads, head_dim, out, lse,
                                            part_out, part_lse, s);
    case DType::fp16:
      return launch_for_part<__half>(part_dtype, rows, seq, heads, head_dim, out, lse, part_out,
                                     part_lse, s);
    case DType::fp32:
      return launch_for_part<float>(part_dtype, rows, seq, heads, head_dim, out, lse, part_out,
                                    part_lse, s);
  }
}

}  // namespace dbsp::cuda
