// Definition of the mma.sync (sm80 family) launch template declared in launch.hpp; included only
// by the per-(dtype, head dim) instantiation files so each compiles one kernel.
#pragma once

#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/sparse_attention/element_of.cuh"
#include "kernels/cuda/sparse_attention/kernel.cuh"
#include "kernels/cuda/sparse_attention/launch.hpp"

namespace dbsp::cuda::detail {

template <ElementKind kElement, int kHeadDim>
using TraitsOf = SparseAttentionTraits<typename ElementOf<kElement>::type, kHeadDim>;

template <ElementKind kElement, int kHeadDim>
int sm80_ctas_per_sm() {
  using Traits = TraitsOf<kElement, kHeadDim>;
  const auto kernel = sparse_attention_kernel<Traits>;
  DBSP_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       Traits::kSmemBytes));
  int blocks = 0;
  DBSP_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, Traits::kThreads,
                                                                Traits::kSmemBytes));
  return blocks;
}

template <ElementKind kElement, int kHeadDim>
void sm80_launch(const SparseAttentionParams& params, float scale, int grid, cudaStream_t stream) {
  using Traits = TraitsOf<kElement, kHeadDim>;
  const auto kernel = sparse_attention_kernel<Traits>;
  DBSP_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       Traits::kSmemBytes));
  kernel<<<grid, Traits::kThreads, Traits::kSmemBytes, stream>>>(params, scale);
  DBSP_CUDA_CHECK_LAUNCH();
}

#define DBSP_INSTANTIATE_SPARSE_ATTENTION(kElement, kHeadDim)                            \
  template <>                                                                            \
  int sparse_attention_ctas_per_sm<KernelFamily::sm80, kElement, kHeadDim>() {           \
    return sm80_ctas_per_sm<kElement, kHeadDim>();                                       \
  }                                                                                      \
  template <>                                                                            \
  void launch_sparse_attention<KernelFamily::sm80, kElement, kHeadDim>(                  \
      const SparseAttentionParams& params, float scale, int grid, cudaStream_t stream) { \
    sm80_launch<kElement, kHeadDim>(params, scale, grid, stream);                        \
  }

}  // namespace dbsp::cuda::detail
