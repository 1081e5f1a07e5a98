// Host-side entry of the sparse attention kernels: one explicit instantiation per (element type,
// head dim) lives in instantiations/*.cu; api.cpp picks one through dispatch.hpp.
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/sparse_attention/params.hpp"

namespace dbsp::cuda::detail {

enum class ElementKind { bf16, fp16 };

// CTAs that fit on one SM at once (the persistent grid is SMs x this).
template <ElementKind kElement, int kHeadDim>
int sparse_attention_ctas_per_sm();

template <ElementKind kElement, int kHeadDim>
void launch_sparse_attention(const SparseAttentionParams& params, float scale, int grid,
                             cudaStream_t stream);

}  // namespace dbsp::cuda::detail
