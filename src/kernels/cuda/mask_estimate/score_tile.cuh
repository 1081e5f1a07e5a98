// The estimation score tile shared by block_scores.cu and fine_scores.cu: a batched fp32 Q K^T
// (not TF32, so the top-p cut sees the CPU estimator's scores up to summation order) in 128 x 128
// output tiles per CTA, 16 x 16 threads each owning an 8 x 8 patch read from shared memory with
// 16-byte loads. The two callers differ only in how an element of a key row is read.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace dbsp::cuda::detail {

constexpr int kScoreTile = 128;
constexpr int kScoreThreads = 256;
constexpr int kScoreDepth = 8;

// One CTA per output tile: x over keys, y over query rows, z over heads.
inline dim3 score_grid(int q_rows, int64_t k_rows, int heads) {
  return dim3(static_cast<unsigned>((k_rows + kScoreTile - 1) / kScoreTile),
              (q_rows + kScoreTile - 1) / kScoreTile, heads);
}

// This CTA's tile of scores[head][row][key] = scale * pooled_q[head][row] . key for head
// blockIdx.z: pooled_q is [heads][q_rows][head_dim], scores [heads][q_rows][k_rows], and
// `key_element(key, d0, c)` reads element d0 + c of the head's key as a float (called in bounds
// only; the depth comes in two terms so the offset sums stay 64-bit, as in the query loads).
template <class KeyElement>
__device__ __forceinline__ void score_tile(const float* pooled_q, KeyElement key_element,
                                           int q_rows, int k_rows, int head_dim, float scale,
                                           float* scores) {
  __shared__ __align__(16) float q_tile[kScoreDepth][kScoreTile];
  __shared__ __align__(16) float k_tile[kScoreDepth][kScoreTile];
  const int head = blockIdx.z;
  const int row0 = blockIdx.y * kScoreTile;
  const int col0 = blockIdx.x * kScoreTile;
  const int tx = threadIdx.x % 16;
  const int ty = threadIdx.x / 16;
  const float* q = pooled_q + int64_t{head} * q_rows * head_dim;
  float acc[8][8] = {};
  for (int d0 = 0; d0 < head_dim; d0 += kScoreDepth) {
    for (int i = threadIdx.x; i < kScoreTile * kScoreDepth; i += blockDim.x) {
      const int r = i / kScoreDepth;
      const int c = i % kScoreDepth;
      const bool in_depth = d0 + c < head_dim;
      q_tile[c][r] =
          (row0 + r < q_rows && in_depth) ? q[int64_t{row0 + r} * head_dim + d0 + c] : 0.f;
      k_tile[c][r] = (col0 + r < k_rows && in_depth) ? key_element(col0 + r, d0, c) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int c = 0; c < kScoreDepth; ++c) {
      const float4 a0 = *reinterpret_cast<const float4*>(&q_tile[c][ty * 8]);
      const float4 a1 = *reinterpret_cast<const float4*>(&q_tile[c][ty * 8 + 4]);
      const float4 b0 = *reinterpret_cast<const float4*>(&k_tile[c][tx * 8]);
      const float4 b1 = *reinterpret_cast<const float4*>(&k_tile[c][tx * 8 + 4]);
      const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
  float* out = scores + int64_t{head} * q_rows * k_rows;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int row = row0 + ty * 8 + i;
    if (row >= q_rows) break;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int col = col0 + tx * 8 + j;
      if (col < k_rows) out[int64_t{row} * k_rows + col] = acc[i][j] * scale;
    }
  }
}

}  // namespace dbsp::cuda::detail
