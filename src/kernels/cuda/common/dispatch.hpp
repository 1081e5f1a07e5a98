// Compile-time dispatch from run-time dtype and head dim: one small switch each, used by every
// launcher so the set of instantiations is written down once (what unsupported_reason() checks).
#pragma once

#include "dbsp/cuda_attention.hpp"
#include "dbsp/error.hpp"
#include "kernels/cuda/sparse_attention/launch.hpp"

#define DBSP_DISPATCH_ELEMENT(dtype, kElement, ...)                                                \
  [&] {                                                                                            \
    switch (dtype) {                                                                               \
      case ::dbsp::cuda::DType::bf16: {                                                            \
        constexpr auto kElement = ::dbsp::cuda::detail::ElementKind::bf16;                         \
        return __VA_ARGS__();                                                                      \
      }                                                                                            \
      case ::dbsp::cuda::DType::fp16: {                                                            \
        constexpr auto kElement = ::dbsp::cuda::detail::ElementKind::fp16;                         \
        return __VA_ARGS__();                                                                      \
      }                                                                                            \
      default:                                                                                     \
        ::dbsp::fail("attention kernels take bf16 or fp16, got ", ::dbsp::cuda::to_string(dtype)); \
    }                                                                                              \
  }()

#define DBSP_DISPATCH_HEAD_DIM(head_dim, kHeadDim, ...)                            \
  [&] {                                                                            \
    switch (head_dim) {                                                            \
      case 64: {                                                                   \
        constexpr int kHeadDim = 64;                                               \
        return __VA_ARGS__();                                                      \
      }                                                                            \
      case 128: {                                                                  \
        constexpr int kHeadDim = 128;                                              \
        return __VA_ARGS__();                                                      \
      }                                                                            \
      default:                                                                     \
        ::dbsp::fail("attention kernels take head_dim 64 or 128, got ", head_dim); \
    }                                                                              \
  }()
