// Definition of the wgmma (sm90 family) launch template declared in launch.hpp; included only by
// the per-(dtype, head dim) files in sm90/instantiations/.
#pragma once

#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/sparse_attention/element_of.cuh"
#include "kernels/cuda/sparse_attention/launch.hpp"
#include "kernels/cuda/sparse_attention/sm90/kernel.cuh"
#include "kernels/cuda/sparse_attention/sm90/traits.cuh"

namespace dbsp::cuda::detail {

template <ElementKind kElement, int kHeadDim>
using Sm90TraitsOf = Sm90Traits<typename ElementOf<kElement>::type, kHeadDim>;

template <ElementKind kElement, int kHeadDim>
int sm90_ctas_per_sm() {
  using Traits = Sm90TraitsOf<kElement, kHeadDim>;
  const auto kernel = sparse_attention_sm90_kernel<Traits>;
  DBSP_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       Traits::kSmemBytes));
  int blocks = 0;
  DBSP_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, Traits::kThreads,
                                                                Traits::kSmemBytes));
  return blocks;
}

template <ElementKind kElement, int kHeadDim>
void sm90_launch(const SparseAttentionParams& params, float scale, int grid, cudaStream_t stream) {
  using Traits = Sm90TraitsOf<kElement, kHeadDim>;
  const auto kernel = sparse_attention_sm90_kernel<Traits>;
  DBSP_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       Traits::kSmemBytes));
  kernel<<<grid, Traits::kThreads, Traits::kSmemBytes, stream>>>(params, scale);
  DBSP_CUDA_CHECK_LAUNCH();
}

#define DBSP_INSTANTIATE_SPARSE_ATTENTION_SM90(kElement, kHeadDim)                       \
  template <>                                                                            \
  int sparse_attention_ctas_per_sm<KernelFamily::sm90, kElement, kHeadDim>() {           \
    return sm90_ctas_per_sm<kElement, kHeadDim>();                                       \
  }                                                                                      \
  template <>                                                                            \
  void launch_sparse_attention<KernelFamily::sm90, kElement, kHeadDim>(                  \
      const SparseAttentionParams& params, float scale, int grid, cudaStream_t stream) { \
    sm90_launch<kElement, kHeadDim>(params, scale, grid, stream);                        \
  }

}  // namespace dbsp::cuda::detail
