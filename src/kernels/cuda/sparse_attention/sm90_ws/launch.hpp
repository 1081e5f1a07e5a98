// Launchers of the warp-specialised kernel, one explicit instantiation per (element, head dim,
// mode) in instantiations/*.cu; launch.cpp builds the tensor maps and picks the variant.
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/sparse_attention/launch.hpp"
#include "kernels/cuda/sparse_attention/params.hpp"
#include "kernels/cuda/sparse_attention/sm90_ws/mode.hpp"
#include "kernels/cuda/sparse_attention/sm90_ws/tensor_maps.hpp"

namespace dbsp::cuda::detail {

template <ElementKind kElement, int kHeadDim, WsMode kMode>
int ws_ctas_per_sm();

// `params.num_items` and `params.work_order` must describe items of ws_item_rows(kMode).
template <ElementKind kElement, int kHeadDim, WsMode kMode>
void ws_launch(const SparseAttentionParams& params, float scale, int grid, const TmaMaps& maps,
               cudaStream_t stream);

}  // namespace dbsp::cuda::detail
