// Epilogue of the sparse attention kernel: normalises O by the row sums, stages each warp's 16
// rows in shared memory (the Q tile's space, which only that warp read) so the global stores are
// 16-byte and coalesced, and writes the fp32 LSE. Rows with no kept key get O = 0, LSE = -inf.
#pragma once

#include <cstdint>

#include "kernels/cuda/common/ptx.cuh"
#include "kernels/cuda/sparse_attention/softmax.cuh"
#include "kernels/cuda/sparse_attention/traits.cuh"
#include "kernels/cuda/sparse_attention/work_item.cuh"

namespace dbsp::cuda::detail {

template <class Traits>
struct Epilogue {
  using Element = typename Traits::Element;
  using Ops = ElementTraits<Element>;
  static constexpr int kHeadDim = Traits::kHeadDim;
  static constexpr int kChunks = Traits::kChunksPerRow;

  __device__ static void store(const SparseAttentionParams& p, const WorkItem& w,
                               float (&o)[kHeadDim / 8][4], OnlineSoftmax& softmax,
                               char* smem_stage, int warp, int lane, float scale) {
    softmax.quad_sum();
    lane = opaque(lane);
    const int quad_row = lane >> 2;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const float sum = softmax.row_sum[half];
      const float inverse = sum > 0.f ? __frcp_rn(sum) : 0.f;
      const int row = warp * 16 + quad_row + half * 8;
#pragma unroll
      for (int j = 0; j < kHeadDim / 8; ++j) {
        const uint32_t packed = Ops::pack(o[j][2 * half] * inverse, o[j][2 * half + 1] * inverse);
        *reinterpret_cast<uint32_t*>(smem_stage + swizzled_offset(row, j, kChunks) +
                                     4 * (lane & 3)) = packed;
      }
      if ((lane & 3) == 0 && p.lse != nullptr && row < w.q_rows) {
        const float lse = sum > 0.f ? softmax.row_max[half] * scale + logf(sum) : -kInfinity;
        p.lse[(int64_t{w.batch} * p.heads + w.head) * p.seq_q + w.q_begin + row] = lse;
      }
    }
    __syncwarp();
    write_rows(p, w, smem_stage, warp, lane);
  }

  // A tile whose row lists are empty: zeros and -inf without touching K/V.
  __device__ static void store_empty(const SparseAttentionParams& p, const WorkItem& w, int tid) {
    Element* out = static_cast<Element*>(p.out);
    const int64_t token_stride = int64_t{p.heads} * kHeadDim;
    const int64_t base =
        (int64_t{w.batch} * p.seq_q + w.q_begin) * token_stride + int64_t{w.head} * kHeadDim;
    for (int i = tid; i < Traits::kTileQ * kChunks; i += Traits::kThreads) {
      const int row = i / kChunks;
      if (row < w.q_rows)
        *reinterpret_cast<uint4*>(out + base + row * token_stride + (i % kChunks) * 8) =
            make_uint4(0, 0, 0, 0);
    }
    if (p.lse != nullptr)
      for (int row = tid; row < w.q_rows; row += Traits::kThreads)
        p.lse[(int64_t{w.batch} * p.heads + w.head) * p.seq_q + w.q_begin + row] = -kInfinity;
  }

 private:
  __device__ static void write_rows(const SparseAttentionParams& p, const WorkItem& w,
                                    const char* smem_stage, int warp, int lane) {
    Element* out = static_cast<Element*>(p.out);
    const int64_t token_stride = int64_t{p.heads} * kHeadDim;
    const int64_t base =
        (int64_t{w.batch} * p.seq_q + w.q_begin) * token_stride + int64_t{w.head} * kHeadDim;
#pragma unroll
    for (int i = 0; i < 16 * kChunks / 32; ++i) {
      const int index = lane + 32 * i;
      const int row = warp * 16 + index / kChunks;
      const int chunk = index % kChunks;
      if (row < w.q_rows)
        *reinterpret_cast<uint4*>(out + base + row * token_stride + chunk * 8) =
            *reinterpret_cast<const uint4*>(smem_stage + swizzled_offset(row, chunk, kChunks));
    }
  }
};

}  // namespace dbsp::cuda::detail
