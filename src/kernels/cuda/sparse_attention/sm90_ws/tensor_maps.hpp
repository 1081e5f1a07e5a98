// TMA tensor maps of the warp-specialised kernel: Q, K and V viewed as 4-D tensors [batch, seq,
// heads, head_dim] with boxes of 64 tokens x 64 channels of one head (one 128-byte swizzle
// column block of a tile). Encoded on the host through the driver entry point that the runtime
// hands out, so no libcuda link is needed; passed to the kernel by value (__grid_constant__).
#pragma once

#include <cuda.h>

#include "kernels/cuda/sparse_attention/launch.hpp"
#include "kernels/cuda/sparse_attention/params.hpp"

namespace dbsp::cuda::detail {

struct TmaMaps {
  CUtensorMap q;
  CUtensorMap k;
  CUtensorMap v;
};

// Maps for the tensors of `params` (its q, k, v pointers, which must be 16-byte aligned).
TmaMaps make_tma_maps(const SparseAttentionParams& params, ElementKind element, int head_dim);

}  // namespace dbsp::cuda::detail
