// The persistent wgmma sparse attention kernel: same work list, key tiles, online softmax and
// epilogue as the mma.sync kernel; the K/V pipeline is cp.async (which also gathers single keys)
// into 128-byte-swizzled tiles that the tensor cores read directly.
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

namespace dbsp::cuda::detail {

template <class Traits>
__device__ void sm90_attend_item(const SparseAttentionParams& p, const WorkItem& w, char* smem,
                                 float scale) {
  using Loop = Sm90Mainloop<Traits>;
  using Loader = TileLoader<Traits, Sw128Columns<64>>;
  constexpr int kStages = Traits::kStages;
  constexpr int kHeadDim = Traits::kHeadDim;
  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;
  const uint32_t smem_q = shared_address(smem);
  const uint32_t smem_kv = smem_q + Traits::kTileQ * kHeadDim * 2;
  auto smem_k = [&](int stage) { return smem_kv + stage * 2 * Traits::kTileBytes; };
  auto smem_v = [&](int stage) { return smem_k(stage) + Traits::kTileBytes; };

  const int tiles = w.tiles();
  Loader::load_q(p, w, smem_q, tid);
#pragma unroll
  for (int stage = 0; stage < kStages - 1; ++stage) {
    if (stage < tiles) Loader::load_kv(p, w, w.tile(p, stage), smem_k(stage), smem_v(stage), tid);
    cp_async_commit();
  }

  float o[kHeadDim / 8][4];
#pragma unroll
  for (int j = 0; j < kHeadDim / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  OnlineSoftmax softmax;

  for (int t = 0; t < tiles; ++t) {
    cp_async_wait<kStages - 2>();
    fence_proxy_async_shared();  // cp.async wrote tile t; the tensor cores read it next
    __syncthreads();             // ... for every thread's copies; tile t - 1's buffer is free
    const int next = t + kStages - 1;
    if (next < tiles) {
      const int stage = next % kStages;
      Loader::load_kv(p, w, w.tile(p, next), smem_k(stage), smem_v(stage), tid);
    }
    cp_async_commit();

    const int stage = t % kStages;
    float s[8][4];
    Loop::scores(smem_q, smem_k(stage), s);
    const int valid = w.tile(p, t).valid;
    if (valid < Traits::kTileK) OnlineSoftmax::mask_tail(s, valid, lane);
    softmax.update(s, o, p.scale_log2);
    Loop::accumulate_pv(s, smem_v(stage), o);
  }
  __syncthreads();  // every warp's products have read Q before the epilogue stages O there
  Epilogue<Traits>::store(p, w, o, softmax, smem, warp, lane, scale);
}

template <class Traits>
__global__ void __launch_bounds__(Traits::kThreads, Traits::kMinBlocksPerSm)
    sparse_attention_sm90_kernel(const SparseAttentionParams p, float scale) {
  extern __shared__ __align__(16) char smem_raw[];
  __shared__ int next_item;
  char* smem = smem_raw + ((1024 - (shared_address(smem_raw) & 1023)) & 1023);
  for (;;) {
    if (threadIdx.x == 0) next_item = atomicAdd(p.work_counter, 1);
    __syncthreads();
    const int index = next_item;
    if (index >= p.num_items) break;
    const int item = p.work_order != nullptr ? p.work_order[index] : index;
    const WorkItem w = WorkItem::make(p, item);
    if (w.q_rows > 0) {
      if (w.tiles() == 0)
        Epilogue<Traits>::store_empty(p, w, threadIdx.x);
      else
        sm90_attend_item<Traits>(p, w, smem, scale);
    }
    __syncthreads();  // the next item's prologue overwrites shared memory and next_item
  }
}

}  // namespace dbsp::cuda::detail
