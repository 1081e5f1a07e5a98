// Host side of the warp-specialised family: tensor maps, the variant (shared keys for dense
// masks, paired rows when the caller asks for them, separate 64-query items otherwise) and its grid
// (each CTA runs one or two pipelines).
#include "kernels/cuda/sparse_attention/launch.hpp"

#include <algorithm>

#include "kernels/cuda/sparse_attention/sm90_ws/launch.hpp"
#include "kernels/cuda/sparse_attention/sm90_ws/tensor_maps.hpp"

namespace dbsp::cuda::detail {
namespace {

template <ElementKind kElement, int kHeadDim>
void launch_ws(const SparseAttentionParams& params, float scale, int grid, cudaStream_t stream) {
  const TmaMaps maps = make_tma_maps(params, kElement, kHeadDim);
  if (params.dense) {
    // Dense: 128-query items in natural order; both consumers of a CTA read the same keys.
    SparseAttentionParams shared = params;
    const int rows = ws_item_rows(WsMode::shared_dense);
    shared.num_items = params.batch * params.heads * ((params.seq_q + rows - 1) / rows);
    shared.work_order = nullptr;
    ws_launch<kElement, kHeadDim, WsMode::shared_dense>(
        shared, scale, std::max(1, std::min(grid, shared.num_items)), maps, stream);
  } else if (params.pair_rows) {
    // Items of two rows (the caller set num_items and the work order for them).
    ws_launch<kElement, kHeadDim, WsMode::paired>(
        params, scale, std::max(1, std::min(grid, params.num_items)), maps, stream);
  } else {
    // Two pipelines per CTA: half as many CTAs as items suffice.
    ws_launch<kElement, kHeadDim, WsMode::separate>(
        params, scale, std::max(1, std::min(grid, (total_items(params) + 1) / 2)), maps, stream);
  }
}

}  // namespace

#define DBSP_SPECIALISE_WS_FAMILY(kElement, kHeadDim)                                    \
  template <>                                                                            \
  int sparse_attention_ctas_per_sm<KernelFamily::sm90_ws, kElement, kHeadDim>() {        \
    return std::min({ws_ctas_per_sm<kElement, kHeadDim, WsMode::separate>(),             \
                     ws_ctas_per_sm<kElement, kHeadDim, WsMode::shared_dense>(),         \
                     ws_ctas_per_sm<kElement, kHeadDim, WsMode::paired>()});             \
  }                                                                                      \
  template <>                                                                            \
  void launch_sparse_attention<KernelFamily::sm90_ws, kElement, kHeadDim>(               \
      const SparseAttentionParams& params, float scale, int grid, cudaStream_t stream) { \
    launch_ws<kElement, kHeadDim>(params, scale, grid, stream);                          \
  }

DBSP_SPECIALISE_WS_FAMILY(ElementKind::bf16, 64)
DBSP_SPECIALISE_WS_FAMILY(ElementKind::bf16, 128)
DBSP_SPECIALISE_WS_FAMILY(ElementKind::fp16, 64)
DBSP_SPECIALISE_WS_FAMILY(ElementKind::fp16, 128)

}  // namespace dbsp::cuda::detail
