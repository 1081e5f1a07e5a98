// Definitions of the warp-specialised launchers declared in launch.hpp; included only by the
// per-variant files in instantiations/.
#pragma once

#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/sparse_attention/element_of.cuh"
#include "kernels/cuda/sparse_attention/sm90_ws/kernel.cuh"
#include "kernels/cuda/sparse_attention/sm90_ws/launch.hpp"
#include "kernels/cuda/sparse_attention/sm90_ws/traits.cuh"

namespace dbsp::cuda::detail {

template <ElementKind kElement, int kHeadDim, WsMode kMode>
using WsTraitsOf = WsTraits<typename ElementOf<kElement>::type, kHeadDim, kMode>;

template <ElementKind kElement, int kHeadDim, WsMode kMode>
int ws_ctas_per_sm() {
  using Traits = WsTraitsOf<kElement, kHeadDim, kMode>;
  const auto kernel = sparse_attention_ws_kernel<Traits>;
  DBSP_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       Traits::kSmemBytes));
  int blocks = 0;
  DBSP_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, Traits::kThreads,
                                                                Traits::kSmemBytes));
  return blocks;
}

template <ElementKind kElement, int kHeadDim, WsMode kMode>
void ws_launch(const SparseAttentionParams& params, float scale, int grid, const TmaMaps& maps,
               cudaStream_t stream) {
  using Traits = WsTraitsOf<kElement, kHeadDim, kMode>;
  static_assert(Traits::kItemRows == ws_item_rows(kMode));
  const auto kernel = sparse_attention_ws_kernel<Traits>;
  DBSP_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       Traits::kSmemBytes));
  kernel<<<grid, Traits::kThreads, Traits::kSmemBytes, stream>>>(params, scale, maps);
  DBSP_CUDA_CHECK_LAUNCH();
}

#define DBSP_INSTANTIATE_SPARSE_ATTENTION_WS(kElement, kHeadDim, kMode)                        \
  template int ws_ctas_per_sm<kElement, kHeadDim, kMode>();                                    \
  template void ws_launch<kElement, kHeadDim, kMode>(const SparseAttentionParams&, float, int, \
                                                     const TmaMaps&, cudaStream_t);

}  // namespace dbsp::cuda::detail
