// Definition of the launch template declared in launch.hpp; included only by the per-(dtype,
// head dim) instantiation files so each compiles one kernel.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/sparse_attention/kernel.cuh"
#include "kernels/cuda/sparse_attention/launch.hpp"

namespace dbsp::cuda::detail {

template <ElementKind kElement>
struct ElementOf;
template <>
struct ElementOf<ElementKind::bf16> {
  using type = __nv_bfloat16;
};
template <>
struct ElementOf<ElementKind::fp16> {
  using type = __half;
};

template <ElementKind kElement, int kHeadDim>
using TraitsOf = SparseAttentionTraits<typename ElementOf<kElement>::type, kHeadDim>;

template <ElementKind kElement, int kHeadDim>
int sparse_attention_ctas_per_sm() {
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
void launch_sparse_attention(const SparseAttentionParams& params, float scale, int grid,
                             cudaStream_t stream) {
  using Traits = TraitsOf<kElement, kHeadDim>;
  const auto kernel = sparse_attention_kernel<Traits>;
  DBSP_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       Traits::kSmemBytes));
  kernel<<<grid, Traits::kThreads, Traits::kSmemBytes, stream>>>(params, scale);
  DBSP_CUDA_CHECK_LAUNCH();
}

#define DBSP_INSTANTIATE_SPARSE_ATTENTION(kElement, kHeadDim)                                    \
  template int sparse_attention_ctas_per_sm<kElement, kHeadDim>();                               \
  template void launch_sparse_attention<kElement, kHeadDim>(const SparseAttentionParams&, float, \
                                                            int, cudaStream_t);

}  // namespace dbsp::cuda::detail
