// Matrix products of the wgmma sparse attention kernel for one warpgroup: S = Q K^T with both
// operands K-major in shared memory, and O += P V with P (bf16/fp16 probabilities) from
// registers and V read N-major (transposed) by the tensor cores. Both only issue and commit:
// the kernel waits, so the next tile's S runs while this tile's softmax does. Shared tiles use
// Sw128Columns<64>: column blocks of 64 elements, 8 KB each, 128-byte swizzled.
#pragma once

#include <cstdint>

#include "kernels/cuda/common/ptx.cuh"
#include "kernels/cuda/common/wgmma.cuh"
#include "kernels/cuda/sparse_attention/smem_layout.cuh"

namespace dbsp::cuda::detail {

template <class Traits>
struct Sm90Mainloop {
  using Element = typename Traits::Element;
  using Ops = ElementTraits<Element>;
  using Layout = Sw128Columns<64>;
  static constexpr int kHeadDim = Traits::kHeadDim;
  static constexpr uint32_t kRowGroupBytes = 8 * 128;  // 8 rows of one swizzle atom

  __device__ static void issue_scores(uint32_t smem_q, uint32_t smem_k, float (&s)[8][4]) {
    fence_operands(s);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kHeadDim / 16; ++kk) {
      // k16 step kk: column block kk / 4, 32 bytes per step inside the 128-byte atom row.
      const uint32_t offset = (kk / 4) * Layout::kColumnBlockBytes + (kk % 4) * 32;
      Wgmma<Element, 64>::ss(s, sw128_descriptor(smem_q + offset, 16, kRowGroupBytes),
                             sw128_descriptor(smem_k + offset, 16, kRowGroupBytes), kk > 0);
    }
    wgmma_commit();
  }

  __device__ static void issue_pv(const float (&p)[8][4], uint32_t smem_v,
                                  float (&o)[kHeadDim / 8][4]) {
    uint32_t a[4][4];
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) {
      a[ks][0] = Ops::pack(p[2 * ks][0], p[2 * ks][1]);
      a[ks][1] = Ops::pack(p[2 * ks][2], p[2 * ks][3]);
      a[ks][2] = Ops::pack(p[2 * ks + 1][0], p[2 * ks + 1][1]);
      a[ks][3] = Ops::pack(p[2 * ks + 1][2], p[2 * ks + 1][3]);
    }
    fence_operands(o);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < 4; ++ks)  // 16 keys per step: two 8-row groups of the atom
      Wgmma<Element, kHeadDim>::rs(o, a[ks],
                                   sw128_descriptor(smem_v + ks * 2 * kRowGroupBytes,
                                                    Layout::kColumnBlockBytes, kRowGroupBytes));
    wgmma_commit();
  }
};

}  // namespace dbsp::cuda::detail
