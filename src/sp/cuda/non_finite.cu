// Kernel of non_finite.hpp.
#include "comm/nccl/nccl_check.hpp"
#include "sp/cuda/non_finite.hpp"

namespace dbsp::sp::device {
namespace {

// bf16 NaN and Inf have every exponent bit set.
__global__ void first_non_finite_kernel(const uint16_t* data, int64_t count,
                                        unsigned long long* first) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    if ((data[i] & 0x7f80u) == 0x7f80u) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

}  // namespace

void first_non_finite_bf16(const uint16_t* data, int64_t count, unsigned long long* first,
                           cudaStream_t stream) {
  if (count <= 0) return;
  constexpr int kThreads = 256;
  const int64_t wanted = (count + kThreads - 1) / kThreads;
  const int blocks = static_cast<int>(wanted < 4096 ? wanted : 4096);
  first_non_finite_kernel<<<blocks, kThreads, 0, stream>>>(data, count, first);
  DBSP_CUDA_RT_CHECK(cudaGetLastError());
}

}  // namespace dbsp::sp::device
