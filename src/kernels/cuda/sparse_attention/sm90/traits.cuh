// Tile configuration of the wgmma (sm_90a) sparse attention kernel: one warpgroup per CTA owns a
// 64-query work item; S = Q K^T (m64n64k16) and O += P V (m64n{64,128}k16, P from registers)
// read Q, K and V straight from 128-byte-swizzled shared memory. Two CTAs per SM at D = 128
// (three at D = 64) let one warpgroup's softmax overlap the other's matrix products.
#pragma once

namespace dbsp::cuda::detail {

template <class ElementT, int kHeadDimT>
struct Sm90Traits {
  using Element = ElementT;
  static constexpr int kHeadDim = kHeadDimT;
  static constexpr int kTileQ = 64;
  static constexpr int kTileK = 64;
  static constexpr int kWarps = 4;  // one warpgroup
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kStages = kHeadDim == 128 ? 2 : 4;
  static constexpr int kMinBlocksPerSm = kHeadDim == 128 ? 2 : 3;
  static constexpr int kChunksPerRow = kHeadDim / 8;
  static constexpr int kTileBytes = kTileK * kHeadDim * 2;
  // Swizzle atoms need 1024-byte alignment; the dynamic buffer is rounded up inside the kernel.
  static constexpr int kAlignSlack = 1024;
  static constexpr int kSmemBytes = kAlignSlack + kTileQ * kHeadDim * 2 + kStages * 2 * kTileBytes;
  static constexpr int kRowsPerThread = kTileK * kChunksPerRow / kThreads;
  static constexpr int kRowStride = kThreads / kChunksPerRow;
  static_assert(kHeadDim == 64 || kHeadDim == 128);
};

}  // namespace dbsp::cuda::detail
