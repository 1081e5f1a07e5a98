// wgmma sparse attention kernel instantiation: bf16 elements, head dim 64.
#include "kernels/cuda/sparse_attention/sm90/launch.cuh"

namespace dbsp::cuda::detail {
DBSP_INSTANTIATE_SPARSE_ATTENTION_SM90(ElementKind::bf16, 64)
}  // namespace dbsp::cuda::detail
