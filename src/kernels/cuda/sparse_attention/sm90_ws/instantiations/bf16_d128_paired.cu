// Warp-specialised attention kernel instantiation: bf16 elements, head dim 128, paired 64-query
// rows of block lists (128-query items over the union of the two rows' key blocks).
#include "kernels/cuda/sparse_attention/sm90_ws/launch.cuh"

namespace dbsp::cuda::detail {
DBSP_INSTANTIATE_SPARSE_ATTENTION_WS(ElementKind::bf16, 128, WsMode::paired)
}  // namespace dbsp::cuda::detail
