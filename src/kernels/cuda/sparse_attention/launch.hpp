// Host-side entry of the sparse attention kernels: one explicit instantiation per (kernel family,
// element type, head dim) lives in instantiations/*.cu, sm90/instantiations/*.cu and
// sm90_ws/launch.cpp; api.cpp picks one through dispatch.hpp.
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/sparse_attention/params.hpp"

namespace dbsp::cuda::detail {

enum class ElementKind { bf16, fp16 };
// sm80: mma.sync + ldmatrix (v1); sm90: wgmma reading shared memory directly (sm_90a);
// sm90_ws: warp-specialised wgmma (producer warps with TMA / cp.async feeding two consumer
// warpgroups through mbarrier rings, sm_90a).
enum class KernelFamily { sm80, sm90, sm90_ws };

// CTAs that fit on one SM at once (the persistent grid is SMs x this).
template <KernelFamily kFamily, ElementKind kElement, int kHeadDim>
int sparse_attention_ctas_per_sm();

template <KernelFamily kFamily, ElementKind kElement, int kHeadDim>
void launch_sparse_attention(const SparseAttentionParams& params, float scale, int grid,
                             cudaStream_t stream);

}  // namespace dbsp::cuda::detail
