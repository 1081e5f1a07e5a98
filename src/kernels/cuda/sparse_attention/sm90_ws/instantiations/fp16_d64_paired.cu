// Warp-specialised attention kernel instantiation: fp16 elements, head dim 64, paired 64-query
// rows of block lists (128-query items over the union of the two rows' key blocks).
#include "kernels/cuda/sparse_attention/sm90_ws/launch.cuh"

namespace dbsp::cuda::detail {
DBSP_INSTANTIATE_SPARSE_ATTENTION_WS(ElementKind::fp16, 64, WsMode::paired)
}  // namespace dbsp::cuda::detail
