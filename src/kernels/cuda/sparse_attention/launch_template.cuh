// How every sparse attention kernel is sized and launched: its Traits name the threads and the
// dynamic shared memory, which is past the 48 KiB default, so the opt-in comes before the
// occupancy query as well as before the launch. The sm80 and sm90 families, one kernel each,
// also share the specialisations of launch.hpp's entry points.
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/sparse_attention/launch.hpp"

namespace dbsp::cuda::detail {

// CTAs of `kernel` that fit on one SM at once.
template <class Traits, class... Params>
int ctas_per_sm(void (*kernel)(Params...)) {
  DBSP_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       Traits::kSmemBytes));
  int blocks = 0;
  DBSP_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, Traits::kThreads,
                                                                Traits::kSmemBytes));
  return blocks;
}

template <class Traits, class... Params, class... Args>
void launch_with_smem(void (*kernel)(Params...), int grid, cudaStream_t stream,
                      const Args&... args) {
  DBSP_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       Traits::kSmemBytes));
  kernel<<<grid, Traits::kThreads, Traits::kSmemBytes, stream>>>(args...);
  DBSP_CUDA_CHECK_LAUNCH();
}

// launch.hpp's entry points for a family of one kernel template, `kernel<TraitsOf<kElement,
// kHeadDim>>`, taking (params, scale).
#define DBSP_SPECIALISE_SINGLE_KERNEL_FAMILY(kFamily, TraitsOf, kernel, kElement, kHeadDim) \
  template <>                                                                               \
  int sparse_attention_ctas_per_sm<kFamily, kElement, kHeadDim>() {                         \
    using Traits = TraitsOf<kElement, kHeadDim>;                                            \
    return ctas_per_sm<Traits>(kernel<Traits>);                                             \
  }                                                                                         \
  template <>                                                                               \
  void launch_sparse_attention<kFamily, kElement, kHeadDim>(                                \
      const SparseAttentionParams& params, float scale, int grid, cudaStream_t stream) {    \
    using Traits = TraitsOf<kElement, kHeadDim>;                                            \
    launch_with_smem<Traits>(kernel<Traits>, grid, stream, params, scale);                  \
  }

}  // namespace dbsp::cuda::detail
