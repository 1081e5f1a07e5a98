// cp.async loaders of the attention kernels: the Q tile of a work item and one (contiguous or
// gathered) K/V tile, into any shared-memory layout from smem_layout.cuh. Rows past a tile's
// valid prefix are zero-filled, so no stale NaN ever meets a zero probability.
#pragma once

#include <cstdint>

#include "kernels/cuda/common/ptx.cuh"
#include "kernels/cuda/sparse_attention/work_item.cuh"

namespace dbsp::cuda::detail {

template <class Traits, class Layout>
struct TileLoader {
  using Element = typename Traits::Element;
  static constexpr int kChunks = Traits::kChunksPerRow;
  static constexpr int kHeadDim = Traits::kHeadDim;

  // Q tile: 64 query rows of one head.
  __device__ static void load_q(const SparseAttentionParams& p, const WorkItem& w, uint32_t smem_q,
                                int tid) {
    const Element* q = static_cast<const Element*>(p.q);
    const int chunk = tid % kChunks;
    const int64_t token_stride = int64_t{p.heads} * kHeadDim;
    const int64_t base = (int64_t{w.batch} * p.seq_q + w.q_begin) * token_stride +
                         int64_t{w.head} * kHeadDim + chunk * 8;
#pragma unroll
    for (int i = 0; i < Traits::kTileQ * kChunks / Traits::kThreads; ++i) {
      const int row = tid / kChunks + i * Traits::kRowStride;
      const bool valid = row < w.q_rows;
      cp_async_16(smem_q + Layout::offset(row, chunk), q + (valid ? base + row * token_stride : 0),
                  valid);
    }
  }

  // One K tile and one V tile: for key lists every row is gathered by its own 16-byte copies.
  // Branch-free per row (the tile kind is uniform): gathered indices are read at a clamped
  // position and masked, so no row needs its own branch around a load.
  __device__ static void load_kv(const SparseAttentionParams& p, const WorkItem& w,
                                 const KeyTile& tile, uint32_t smem_k, uint32_t smem_v, int tid) {
    const int chunk = tid % kChunks;
    const int row0 = tid / kChunks;
    const int token_stride = p.heads * kHeadDim;  // < 2^31 elements per batch (API check)
    const int64_t base = int64_t{w.batch} * p.seq_k * token_stride + w.head * kHeadDim + chunk * 8;
    const Element* k = static_cast<const Element*>(p.k) + base;
    const Element* v = static_cast<const Element*>(p.v) + base;
    int tokens[Traits::kRowsPerThread];
    if (tile.gathered != nullptr) {
      const int last = tile.valid - 1;  // >= 0: key-list tiles are never empty
#pragma unroll
      for (int i = 0; i < Traits::kRowsPerThread; ++i)
        tokens[i] = __ldg(tile.gathered + min(row0 + i * Traits::kRowStride, last));
    } else {
#pragma unroll
      for (int i = 0; i < Traits::kRowsPerThread; ++i)
        tokens[i] = tile.first_token + row0 + i * Traits::kRowStride;
    }
#pragma unroll
    for (int i = 0; i < Traits::kRowsPerThread; ++i) {
      const int row = row0 + i * Traits::kRowStride;
      const bool valid = row < tile.valid;
      const int offset = valid ? tokens[i] * token_stride : 0;
      const int smem_offset = Layout::offset(row, chunk);
      cp_async_16(smem_k + smem_offset, k + offset, valid);
      cp_async_16(smem_v + smem_offset, v + offset, valid);
    }
  }
};

}  // namespace dbsp::cuda::detail
