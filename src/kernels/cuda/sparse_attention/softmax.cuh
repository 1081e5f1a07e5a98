// Online softmax of one warp's 16 query rows (each thread holds rows lane/4 and lane/4 + 8):
// running max in score units, base-2 exponentials with the scale folded in, and a per-thread
// partial row sum that is reduced across the quad only once, in the epilogue.
#pragma once

#include "kernels/cuda/common/ptx.cuh"

namespace dbsp::cuda::detail {

struct OnlineSoftmax {
  float row_max[2];
  float row_sum[2];  // this thread's share; quad_sum() completes it

  __device__ OnlineSoftmax() : row_max{-kInfinity, -kInfinity}, row_sum{0.f, 0.f} {}

  // Columns >= valid hold no key (tile tail or padding): they get probability 0.
  __device__ __forceinline__ static void mask_tail(float (&s)[8][4], int valid, int lane) {
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        if (j * 8 + 2 * (lane & 3) + (e & 1) >= valid) s[j][e] = -kInfinity;
  }

  // Turns scores into probabilities relative to the new running max and rescales o.
  template <int kOutTiles>
  __device__ __forceinline__ void update(float (&s)[8][4], float (&o)[kOutTiles][4],
                                         float scale_log2) {
    float correction[2];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float tile_max = row_max[half];
#pragma unroll
      for (int j = 0; j < 8; ++j)
        tile_max = fmaxf(tile_max, fmaxf(s[j][2 * half], s[j][2 * half + 1]));
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
      // A row that has seen only masked columns keeps max -inf; shift by 0 so no inf - inf.
      const float shift = tile_max == -kInfinity ? 0.f : tile_max * scale_log2;
      correction[half] = fast_exp2(row_max[half] * scale_log2 - shift);
      row_max[half] = tile_max;
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        s[j][2 * half] = fast_exp2(fmaf(s[j][2 * half], scale_log2, -shift));
        s[j][2 * half + 1] = fast_exp2(fmaf(s[j][2 * half + 1], scale_log2, -shift));
        sum += s[j][2 * half] + s[j][2 * half + 1];
      }
      row_sum[half] = row_sum[half] * correction[half] + sum;
    }
    // Once the running maxima settle, most tiles change no row's max: skip the rescale of o
    // (kOutTiles x 4 multiplies per thread) when no row of the warp needs it.
    if (__all_sync(0xffffffffu, correction[0] == 1.f && correction[1] == 1.f)) return;
#pragma unroll
    for (int half = 0; half < 2; ++half)
#pragma unroll
      for (int j = 0; j < kOutTiles; ++j) {
        o[j][2 * half] *= correction[half];
        o[j][2 * half + 1] *= correction[half];
      }
  }

  __device__ __forceinline__ void quad_sum() {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      row_sum[half] += __shfl_xor_sync(0xffffffffu, row_sum[half], 1);
      row_sum[half] += __shfl_xor_sync(0xffffffffu, row_sum[half], 2);
    }
  }
};

}  // namespace dbsp::cuda::detail
