// Mainloop products of the mma.sync sparse attention kernel (one warp, 16 query rows): Q
// fragments, S = Q K^T and O += P V from XOR-swizzled shared memory through ldmatrix.
#pragma once

#include <cstdint>

#include "kernels/cuda/common/ptx.cuh"
#include "kernels/cuda/sparse_attention/traits.cuh"

namespace dbsp::cuda::detail {

template <class Traits>
struct Mainloop {
  using Element = typename Traits::Element;
  using Ops = ElementTraits<Element>;
  static constexpr int kChunks = Traits::kChunksPerRow;
  static constexpr int kHeadDim = Traits::kHeadDim;

  // A fragments of this warp's 16 query rows, all of head_dim.
  __device__ static void load_q_fragments(uint32_t smem_q, int warp, int lane,
                                          uint32_t (&qf)[kHeadDim / 16][4]) {
    const int row = warp * 16 + (lane & 15);
#pragma unroll
    for (int kk = 0; kk < kHeadDim / 16; ++kk)
      ldmatrix_x4(smem_q + swizzled_offset(row, kk * 2 + (lane >> 4), kChunks), qf[kk]);
  }

  // s[j] = scores of this warp's 16 rows against keys 8j..8j+7 of the tile.
  __device__ static void scores(const uint32_t (&qf)[kHeadDim / 16][4], uint32_t smem_k, int lane,
                                float (&s)[8][4]) {
#pragma unroll
    for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
    const int key_in_pair = (lane & 7) + ((lane >> 4) << 3);
    const int chunk_in_pair = (lane >> 3) & 1;
#pragma unroll
    for (int kk = 0; kk < kHeadDim / 16; ++kk) {
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        uint32_t b[4];
        ldmatrix_x4(
            smem_k + swizzled_offset(np * 16 + key_in_pair, kk * 2 + chunk_in_pair, kChunks), b);
        Ops::mma(s[2 * np], qf[kk], b[0], b[1]);
        Ops::mma(s[2 * np + 1], qf[kk], b[2], b[3]);
      }
    }
  }

  // o += P V with P (probabilities, already exponentiated) taken from the score registers.
  __device__ static void accumulate_pv(const float (&s)[8][4], uint32_t smem_v, int lane,
                                       float (&o)[kHeadDim / 8][4]) {
    const int key_in_step = (lane & 7) + (((lane >> 3) & 1) << 3);
    const int chunk_in_pair = lane >> 4;
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) {
      const uint32_t a[4] = {Ops::pack(s[2 * ks][0], s[2 * ks][1]),
                             Ops::pack(s[2 * ks][2], s[2 * ks][3]),
                             Ops::pack(s[2 * ks + 1][0], s[2 * ks + 1][1]),
                             Ops::pack(s[2 * ks + 1][2], s[2 * ks + 1][3])};
#pragma unroll
      for (int dp = 0; dp < kHeadDim / 16; ++dp) {
        uint32_t b[4];
        ldmatrix_x4_trans(
            smem_v + swizzled_offset(ks * 16 + key_in_step, dp * 2 + chunk_in_pair, kChunks), b);
        Ops::mma(o[2 * dp], a, b[0], b[1]);
        Ops::mma(o[2 * dp + 1], a, b[2], b[3]);
      }
    }
  }
};

}  // namespace dbsp::cuda::detail
