// Definition of the wgmma (sm90 family) launch template declared in launch.hpp; included only by
// the per-(dtype, head dim) files in sm90/instantiations/.
#pragma once

#include "kernels/cuda/sparse_attention/element_of.cuh"
#include "kernels/cuda/sparse_attention/launch_template.cuh"
#include "kernels/cuda/sparse_attention/sm90/kernel.cuh"
#include "kernels/cuda/sparse_attention/sm90/traits.cuh"

namespace dbsp::cuda::detail {

template <ElementKind kElement, int kHeadDim>
using Sm90TraitsOf = Sm90Traits<typename ElementOf<kElement>::type, kHeadDim>;

#define DBSP_INSTANTIATE_SPARSE_ATTENTION_SM90(kElement, kHeadDim)       \
  DBSP_SPECIALISE_SINGLE_KERNEL_FAMILY(KernelFamily::sm90, Sm90TraitsOf, \
                                       sparse_attention_sm90_kernel, kElement, kHeadDim)

}  // namespace dbsp::cuda::detail
