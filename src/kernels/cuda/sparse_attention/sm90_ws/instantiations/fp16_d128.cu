// Warp-specialised attention kernel instantiation: fp16 elements, head dim 128, separate 64-query
// items.
#include "kernels/cuda/sparse_attention/sm90_ws/launch.cuh"

namespace dbsp::cuda::detail {
DBSP_INSTANTIATE_SPARSE_ATTENTION_WS(ElementKind::fp16, 128, WsMode::separate)
}  // namespace dbsp::cuda::detail
