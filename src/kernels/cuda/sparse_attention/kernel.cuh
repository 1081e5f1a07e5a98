// The persistent sparse attention kernel: each CTA takes work items (batch, head, 64-query tile)
// from a device counter in schedule order and runs the FlashAttention-2 loop over the item's key
// tiles (key blocks and gathered single keys alike) through a kStages-deep cp.async pipeline.
#pragma once

#include <cstdint>

#include "kernels/cuda/common/ptx.cuh"
#include "kernels/cuda/sparse_attention/epilogue.cuh"
#include "kernels/cuda/sparse_attention/mainloop.cuh"
#include "kernels/cuda/sparse_attention/smem_layout.cuh"
#include "kernels/cuda/sparse_attention/softmax.cuh"
#include "kernels/cuda/sparse_attention/tile_loader.cuh"
#include "kernels/cuda/sparse_attention/traits.cuh"
#include "kernels/cuda/sparse_attention/work_item.cuh"
#include "kernels/cuda/sparse_attention/work_list.cuh"

namespace dbsp::cuda::detail {

template <class Traits>
__device__ void attend_item(const SparseAttentionParams& p, const WorkItem& w, char* smem,
                            float scale) {
  using Loop = Mainloop<Traits>;
  using Loader = TileLoader<Traits, XorRows<Traits::kChunksPerRow>>;
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
  // Prologue: Q with tile 0 in the first group, then tiles 1 .. kStages-2, one group each.
  Loader::load_q(p, w, smem_q, tid);
#pragma unroll
  for (int stage = 0; stage < kStages - 1; ++stage) {
    if (stage < tiles) Loader::load_kv(p, w, w.tile(p, stage), smem_k(stage), smem_v(stage), tid);
    cp_async_commit();
  }

  uint32_t qf[kHeadDim / 16][4];
  float o[kHeadDim / 8][4];
#pragma unroll
  for (int j = 0; j < kHeadDim / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  OnlineSoftmax softmax;

  for (int t = 0; t < tiles; ++t) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // tile t visible to all; every warp is done with tile t - 1's buffer
    const int next = t + kStages - 1;
    if (next < tiles) {
      const int stage = next % kStages;
      Loader::load_kv(p, w, w.tile(p, next), smem_k(stage), smem_v(stage), tid);
    }
    cp_async_commit();
    if (t == 0) Loop::load_q_fragments(smem_q, warp, lane, qf);

    const int stage = t % kStages;
    float s[8][4];
    Loop::scores(qf, smem_k(stage), lane, s);
    const int valid = w.tile(p, t).valid;
    if (valid < Traits::kTileK) OnlineSoftmax::mask_tail(s, valid, lane);
    softmax.update(s, o, p.scale_log2);
    Loop::accumulate_pv(s, smem_v(stage), lane, o);
  }
  Epilogue<Traits>::store(p, w, o, softmax, smem, warp, lane, scale);
}

template <class Traits>
__global__ void __launch_bounds__(Traits::kThreads, Traits::kMinBlocksPerSm)
    sparse_attention_kernel(const SparseAttentionParams p, float scale) {
  extern __shared__ __align__(128) char smem[];
  __shared__ int next_item;
  for_each_cta_item<Traits>(p, &next_item,
                            [&](const WorkItem& w) { attend_item<Traits>(p, w, smem, scale); });
}

}  // namespace dbsp::cuda::detail
