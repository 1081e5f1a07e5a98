// Host-side entry of the sparse attention kernels: one explicit instantiation per (kernel family,
// element type, head dim) lives in instantiations/*.cu and sm90/instantiations/*.cu; api.cpp
// picks one through dispatch.hpp.
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/sparse_attention/params.hpp"

namespace dbsp::cuda::detail {

enum class ElementKind { bf16, fp16 };
// sm80: mma.sync + ldmatrix (v1); sm90: wgmma reading shared memory directly (sm_90a).
enum class KernelFamily { sm80, sm90 };

// CTAs that fit on one SM at once (the persistent grid is SMs x this).
template <KernelFamily kFamily, ElementKind kElement, int kHeadDim>
int sparse_attention_ctas_per_sm();

template <KernelFamily kFamily, ElementKind kElement, int kHeadDim>
void launch_sparse_attention(const SparseAttentionParams& params, float scale, int grid,
                             cudaStream_t stream);

}  // namespace dbsp::cuda::detail
