// Definition of the mma.sync (sm80 family) launch template declared in launch.hpp; included only
// by the per-(dtype, head dim) instantiation files so each compiles one kernel.
#pragma once

#include "kernels/cuda/sparse_attention/element_of.cuh"
#include "kernels/cuda/sparse_attention/kernel.cuh"
#include "kernels/cuda/sparse_attention/launch_template.cuh"

namespace dbsp::cuda::detail {

template <ElementKind kElement, int kHeadDim>
using TraitsOf = SparseAttentionTraits<typename ElementOf<kElement>::type, kHeadDim>;

#define DBSP_INSTANTIATE_SPARSE_ATTENTION(kElement, kHeadDim)                                 \
  DBSP_SPECIALISE_SINGLE_KERNEL_FAMILY(KernelFamily::sm80, TraitsOf, sparse_attention_kernel, \
                                       kElement, kHeadDim)

}  // namespace dbsp::cuda::detail
