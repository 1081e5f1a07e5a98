// The persistent wgmma sparse attention kernel: same work list, key tiles, online softmax and
// epilogue as the mma.sync kernel. K/V arrive by cp.async (which also gathers single keys) into
// 128-byte-swizzled tiles that the tensor cores read directly, kStages deep. The loop is
// software-pipelined inside the warpgroup: S(t+1) = Q K(t+1)^T is issued before the softmax of
// tile t, so the tensor cores work while the exponentials run.
#pragma once

#include <cstdint>

#include "kernels/cuda/common/ptx.cuh"
#include "kernels/cuda/common/wgmma.cuh"
#include "kernels/cuda/sparse_attention/epilogue.cuh"
#include "kernels/cuda/sparse_attention/sm90/mainloop.cuh"
#include "kernels/cuda/sparse_attention/smem_layout.cuh"
#include "kernels/cuda/sparse_attention/softmax.cuh"
#include "kernels/cuda/sparse_attention/tile_loader.cuh"
#include "kernels/cuda/sparse_attention/work_item.cuh"
#include "kernels/cuda/sparse_attention/work_list.cuh"

namespace dbsp::cuda::detail {

// Waits until this thread's copies of all but the newest `pending` groups landed, makes them
// visible to the tensor cores (async proxy), then to every thread of the CTA.
template <int kPending>
__device__ __forceinline__ void wait_tiles() {
  cp_async_wait<kPending>();
  fence_proxy_async_shared();
  __syncthreads();
}

template <class Traits>
__device__ void sm90_attend_item(const SparseAttentionParams& p, const WorkItem& w, char* smem,
                                 float scale) {
  using Loop = Sm90Mainloop<Traits>;
  using Loader = TileLoader<Traits, Sw128Columns<64>>;
  constexpr int kStages = Traits::kStages;
  constexpr int kHeadDim = Traits::kHeadDim;
  static_assert(kStages >= 3, "tile t's V, tile t+1's K and one tile in flight");
  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;
  const uint32_t smem_q = shared_address(smem);
  const uint32_t smem_kv = smem_q + Traits::kTileQ * kHeadDim * 2;
  auto smem_k = [&](int t) { return smem_kv + (t % kStages) * 2 * Traits::kTileBytes; };
  auto smem_v = [&](int t) { return smem_k(t) + Traits::kTileBytes; };

  const int tiles = w.tiles();
  // Prologue: groups 0 .. kStages-2 hold tiles 0 .. kStages-2 (Q rides with tile 0).
  Loader::load_q(p, w, smem_q, tid);
#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) {
    if (t < tiles) Loader::load_kv(p, w, w.tile(p, t), smem_k(t), smem_v(t), tid);
    cp_async_commit();
  }
  float o[kHeadDim / 8][4];
#pragma unroll
  for (int j = 0; j < kHeadDim / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  OnlineSoftmax softmax;
  float s[8][4], s_next[8][4];

  wait_tiles<kStages - 2>();  // group 0: Q and tile 0
  Loop::issue_scores(smem_q, smem_k(0), s);
  wgmma_wait<0>();
  fence_operands(s);

  for (int t = 0; t < tiles; ++t) {
    // Before iteration t, kStages - 1 + t groups were committed; tile t + 1 is group t + 1.
    const bool has_next = t + 1 < tiles;
    if (has_next) {
      wait_tiles<kStages - 3>();  // also: every thread finished iteration t - 1's products
      Loop::issue_scores(smem_q, smem_k(t + 1), s_next);
    }
    const int load = t + kStages - 1;  // into the buffer of tile t - 1, free by now
    if (load < tiles) Loader::load_kv(p, w, w.tile(p, load), smem_k(load), smem_v(load), tid);
    cp_async_commit();

    const int valid = w.tile(p, t).valid;
    if (valid < Traits::kTileK) OnlineSoftmax::mask_tail(s, valid, lane);
    softmax.update(s, o, p.scale_log2);
    Loop::issue_pv(s, smem_v(t), o);
    wgmma_wait<0>();  // S(t+1) and O += P(t) V(t)
    fence_operands(o);
    if (has_next) {
      fence_operands(s_next);
#pragma unroll
      for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[j][e] = s_next[j][e];
    }
  }
  __syncthreads();  // every warp's products have read Q before the epilogue stages O there
  Epilogue<Traits>::store(p, w, o, softmax, smem, warp, lane, scale);
}

template <class Traits>
__global__ void __launch_bounds__(Traits::kThreads, Traits::kMinBlocksPerSm)
    sparse_attention_sm90_kernel(const SparseAttentionParams p, float scale) {
  // No static shared memory: the dynamic buffer then starts at the CTA's shared window, which is
  // aligned for the 1024-byte swizzle atoms (checked below). The work slot sits at its end.
  extern __shared__ __align__(1024) char smem[];
  int* next_item = reinterpret_cast<int*>(smem + Traits::kSmemBytes - 16);
  if ((shared_address(smem) & 1023) != 0) __trap();
  for_each_cta_item<Traits>(
      p, next_item, [&](const WorkItem& w) { sm90_attend_item<Traits>(p, w, smem, scale); });
}

}  // namespace dbsp::cuda::detail
