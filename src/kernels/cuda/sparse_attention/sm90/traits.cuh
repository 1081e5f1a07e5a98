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
  // kStages >= 3: tile t's V, tile t+1's K (its S is issued before t's softmax), a load in flight.
  static constexpr int kStages = kHeadDim == 128 ? 3 : 4;
  static constexpr int kMinBlocksPerSm = kHeadDim == 128 ? 2 : 3;
  static constexpr int kChunksPerRow = kHeadDim / 8;
  static constexpr int kTileBytes = kTileK * kHeadDim * 2;
  // Q, the K/V stages, and 16 bytes for the persistent loop's work slot. D = 128: 112 KB + 16 B,
  // two CTAs per SM exactly fit the 228 KB of an H100 SM (with the 1 KB each CTA reserves).
  static constexpr int kSmemBytes = kTileQ * kHeadDim * 2 + kStages * 2 * kTileBytes + 16;
  static constexpr int kRowsPerThread = kTileK * kChunksPerRow / kThreads;
  static constexpr int kRowStride = kThreads / kChunksPerRow;
  static_assert(kHeadDim == 64 || kHeadDim == 128);
};

}  // namespace dbsp::cuda::detail
