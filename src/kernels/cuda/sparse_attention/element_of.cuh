// Maps the host-side ElementKind of launch.hpp to the device element type.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/sparse_attention/launch.hpp"

namespace dbsp::cuda::detail {

template <ElementKind kElement>
struct ElementOf;
template <>
struct ElementOf<ElementKind::bf16> {
  using type = __nv_bfloat16;
};
template <>
struct ElementOf<ElementKind::fp16> {
  using type = __half;
};

}  // namespace dbsp::cuda::detail
