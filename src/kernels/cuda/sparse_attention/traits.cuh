// Tile configuration of the mma.sync sparse attention kernel: 64 queries x 64 keys per step,
// 4 warps of 16 query rows each, K/V staged through a cp.async pipeline in swizzled shared memory.
#pragma once

namespace dbsp::cuda::detail {

template <class ElementT, int kHeadDimT>
struct SparseAttentionTraits {
  using Element = ElementT;
  static constexpr int kHeadDim = kHeadDimT;
  static constexpr int kTileQ = 64;  // queries per work item, the mask's block_q granule
  static constexpr int kTileK = 64;  // keys per pipeline step
  static constexpr int kWarps = 4;   // each owns 16 query rows
  static constexpr int kThreads = kWarps * 32;
  // D=128: 80 KB of shared memory and ~170 registers -> 2 CTAs per SM; D=64: 56 KB -> 4 CTAs.
  static constexpr int kStages = kHeadDim == 128 ? 2 : 3;
  static constexpr int kMinBlocksPerSm = kHeadDim == 128 ? 2 : 4;
  static constexpr int kChunksPerRow = kHeadDim / 8;  // 16-byte chunks of one token row
  static constexpr int kTileElements = kTileK * kHeadDim;
  static constexpr int kTileBytes = kTileElements * 2;
  static constexpr int kSmemBytes = kTileQ * kHeadDim * 2 + kStages * 2 * kTileBytes;
  // Rows of a K/V tile each thread copies (one 16-byte chunk column, rows strided).
  static constexpr int kRowsPerThread = kTileK * kChunksPerRow / kThreads;
  static constexpr int kRowStride = kThreads / kChunksPerRow;
  static_assert(kTileK * kChunksPerRow % kThreads == 0);
  static_assert(kHeadDim == 64 || kHeadDim == 128);
};

// Byte offset of 16-byte chunk `chunk` of row `row` in a tile with `chunks_per_row` chunks per
// row. The XOR spreads the 8 rows an ldmatrix phase reads over all 32 banks.
__device__ __forceinline__ int swizzled_offset(int row, int chunk, int chunks_per_row) {
  return (row * chunks_per_row + (chunk ^ (row & 7))) * 16;
}

}  // namespace dbsp::cuda::detail
