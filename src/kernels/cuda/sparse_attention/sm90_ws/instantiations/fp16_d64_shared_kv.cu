// Warp-specialised attention kernel instantiation: fp16 elements, head dim 64, 128-query dense
// items, keys shared.
#include "kernels/cuda/sparse_attention/sm90_ws/launch.cuh"

namespace dbsp::cuda::detail {
DBSP_INSTANTIATE_SPARSE_ATTENTION_WS(ElementKind::fp16, 64, WsMode::shared_dense)
}  // namespace dbsp::cuda::detail
