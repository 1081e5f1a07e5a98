// Kernel of non_finite.hpp.
#include "comm/nccl/nccl_check.hpp"
#include "sp/cuda/non_finite.hpp"

namespace dbsp::sp::device {
namespace {

// bf16 NaN and Inf have every exponent bit set.
__device__ __forceinline__ bool non_finite(uint32_t bf16) { return (bf16 & 0x7f80u) == 0x7f80u; }

// Eight values per 16-byte load: a scan of the output sits on the layer's critical path, and
// 2-byte loads left it at about half the memory's bandwidth (0.5 ms per 480p call on an H200).
// Elements [8 * vectors, count) are scanned one by one by the first threads.
__global__ void first_non_finite_kernel(const uint4* vectors, int64_t vector_count,
                                        const uint16_t* data, int64_t count,
                                        unsigned long long* first) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t thread = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t i = thread; i < vector_count; i += stride) {
    const uint4 x = __ldg(vectors + i);
    const uint32_t words[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      for (int half = 0; half < 2; ++half) {
        if (non_finite(words[w] >> (16 * half))) {
          atomicMin(first, static_cast<unsigned long long>(8 * i + 2 * w + half));
        }
      }
    }
  }
  for (int64_t i = 8 * vector_count + thread; i < count; i += stride) {
    if (non_finite(data[i])) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

}  // namespace

void first_non_finite_bf16(const uint16_t* data, int64_t count, unsigned long long* first,
                           cudaStream_t stream) {
  if (count <= 0) return;
  // Vector loads need 16-byte alignment; a caller's output at an odd address is scanned whole
  // one value at a time.
  const bool aligned = reinterpret_cast<uintptr_t>(data) % 16 == 0;
  const int64_t vector_count = aligned ? count / 8 : 0;
  constexpr int kThreads = 256;
  const int64_t per_thread = vector_count > 0 ? vector_count : count;
  const int64_t wanted = (per_thread + kThreads - 1) / kThreads;
  const int blocks = static_cast<int>(wanted < 4096 ? wanted : 4096);
  first_non_finite_kernel<<<blocks, kThreads, 0, stream>>>(reinterpret_cast<const uint4*>(data),
                                                           vector_count, data, count, first);
  DBSP_CUDA_RT_CHECK(cudaGetLastError());
}

}  // namespace dbsp::sp::device
