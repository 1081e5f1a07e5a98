// Definitions of the warp-specialised launchers declared in launch.hpp; included only by the
// per-variant files in instantiations/.
#pragma once

#include "kernels/cuda/sparse_attention/element_of.cuh"
#include "kernels/cuda/sparse_attention/launch_template.cuh"
#include "kernels/cuda/sparse_attention/sm90_ws/kernel.cuh"
#include "kernels/cuda/sparse_attention/sm90_ws/launch.hpp"
#include "kernels/cuda/sparse_attention/sm90_ws/traits.cuh"

namespace dbsp::cuda::detail {

template <ElementKind kElement, int kHeadDim, WsMode kMode>
using WsTraitsOf = WsTraits<typename ElementOf<kElement>::type, kHeadDim, kMode>;

template <ElementKind kElement, int kHeadDim, WsMode kMode>
int ws_ctas_per_sm() {
  using Traits = WsTraitsOf<kElement, kHeadDim, kMode>;
  return ctas_per_sm<Traits>(sparse_attention_ws_kernel<Traits>);
}

template <ElementKind kElement, int kHeadDim, WsMode kMode>
void ws_launch(const SparseAttentionParams& params, float scale, int grid, const TmaMaps& maps,
               cudaStream_t stream) {
  using Traits = WsTraitsOf<kElement, kHeadDim, kMode>;
  static_assert(Traits::kItemRows == ws_item_rows(kMode));
  launch_with_smem<Traits>(sparse_attention_ws_kernel<Traits>, grid, stream, params, scale, maps);
}

#define DBSP_INSTANTIATE_SPARSE_ATTENTION_WS(kElement, kHeadDim, kMode)                        \
  template int ws_ctas_per_sm<kElement, kHeadDim, kMode>();                                    \
  template void ws_launch<kElement, kHeadDim, kMode>(const SparseAttentionParams&, float, int, \
                                                     const TmaMaps&, cudaStream_t);

}  // namespace dbsp::cuda::detail
