// wgmma sparse attention kernel instantiation: fp16 elements, head dim 128.
#include "kernels/cuda/sparse_attention/sm90/launch.cuh"

namespace dbsp::cuda::detail {
DBSP_INSTANTIATE_SPARSE_ATTENTION_SM90(ElementKind::fp16, 128)
}  // namespace dbsp::cuda::detail
