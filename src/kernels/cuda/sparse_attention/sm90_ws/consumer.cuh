// Consumer warpgroup of the warp-specialised kernel: per work item, Q fragments into registers
// (the Q buffer goes straight back to the producer), then per 64-key stage S = Q K^T
// (m64n64k16, A from registers, K K-major in shared memory), the online softmax and O += P V.
// S(t+1) is issued before the softmax of tile t, so the tensor cores work while the
// exponentials run; the loop is unrolled by two so the two score buffers swap roles without
// copies. A stage's K goes back to the producer once S has completed, its V once P V has. The
// epilogue writes O and the LSE straight from registers. Paired rows: each consumer walks every
// stage of the item and computes only those its row keeps. (Measured and dropped, 2026-11-23:
// issuing S(t+1) together with P(t) V(t) and overlapping the softmax of t+1 with P V, with or
// without ping-pong turns between the two consumers: 3-11% slower.)
#pragma once

#include <cstdint>

#include "kernels/cuda/common/async_copy.cuh"
#include "kernels/cuda/common/ptx.cuh"
#include "kernels/cuda/common/wgmma.cuh"
#include "kernels/cuda/sparse_attention/sm90/mainloop.cuh"
#include "kernels/cuda/sparse_attention/sm90_ws/pipeline.cuh"
#include "kernels/cuda/sparse_attention/smem_layout.cuh"
#include "kernels/cuda/sparse_attention/softmax.cuh"

namespace dbsp::cuda::detail {

template <class Traits>
struct WsConsumer {
  using Element = typename Traits::Element;
  using Ops = ElementTraits<Element>;
  using Layout = Sw128Columns<64>;
  static constexpr int kHeadDim = Traits::kHeadDim;
  static constexpr int kKSteps = kHeadDim / 16;
  using QFragments = uint32_t[kKSteps][4];
  using Scores = float[8][4];
  using Output = float[kHeadDim / 8][4];

  __device__ static void run(const SparseAttentionParams& p, const Pipeline<Traits>& pipe,
                             int consumer, float scale) {
    const int warp = (threadIdx.x / 32) % 4;
    const int lane = threadIdx.x % 32;
    RingPosition ring;
    uint32_t q_phase = 0;
    for (;;) {
      mbarrier_wait(pipe.k_full(ring.stage), ring.phase);
      const StageRecord first = *pipe.record(ring.stage);
      if (first.tiles < 0) return;
      attend_item(p, pipe, first, consumer, warp, lane, ring, q_phase, scale);
      q_phase ^= 1;
    }
  }

 private:
  // What the consumer keeps of a stage's record: it is read when the stage's K arrives, because
  // the producer may rewrite it as soon as that K is released.
  struct TileInfo {
    int valid;
    int gathered;
    int owners;  // paired rows only
    __device__ static TileInfo of(const StageRecord& record) {
      if constexpr (Traits::kPaired) return {record.valid, 0, record.owners};
      return {record.valid, record.gathered, 0};
    }
  };

  // Paired rows: a stage only the other consumer's row keeps goes back at once. Its K phase has
  // completed (so the previous round's K release has too); the other consumer may still be
  // multiplying the previous round's V of this stage, whose release this one's arrival must not
  // join, so it waits for that release first.
  __device__ static void release_unused(const Pipeline<Traits>& pipe, const RingPosition& ring,
                                        int lane) {
    if (lane == 0) mbarrier_arrive(pipe.k_empty(ring.stage));
    mbarrier_wait(pipe.v_empty(ring.stage), ring.phase ^ 1);
    if (lane == 0) mbarrier_arrive(pipe.v_empty(ring.stage));
  }

  // Paired rows: waits for the stage at `ring` and returns it when this consumer's row keeps it;
  // otherwise releases it and moves on (the item has one while this consumer has tiles left).
  __device__ static void skip_to_owned(const Pipeline<Traits>& pipe, RingPosition& ring,
                                       int owner_bit, int lane) {
    for (;;) {
      mbarrier_wait(pipe.k_full(ring.stage), ring.phase);
      if (pipe.record(ring.stage)->owners & owner_bit) return;
      release_unused(pipe, ring, lane);
      ring.advance<Traits::kStages>();
    }
  }

  // Paired rows: releases the item's stages from `ring` on up to its last one (none of them is
  // this consumer's), unless the last has been passed already.
  __device__ static void release_rest(const Pipeline<Traits>& pipe, RingPosition& ring,
                                      int last_owners, int lane) {
    if (last_owners & StageRecord::kLastOfItem) return;
    for (;;) {
      mbarrier_wait(pipe.k_full(ring.stage), ring.phase);
      const int owners = pipe.record(ring.stage)->owners;
      release_unused(pipe, ring, lane);
      ring.advance<Traits::kStages>();
      if (owners & StageRecord::kLastOfItem) return;
    }
  }

  __device__ static void attend_item(const SparseAttentionParams& p, const Pipeline<Traits>& pipe,
                                     const StageRecord& first, int consumer, int warp, int lane,
                                     RingPosition& ring, uint32_t q_phase, float scale) {
    QFragments q;
    mbarrier_wait(pipe.q_full(), q_phase);
    load_q(pipe.q + consumer * Traits::kTileBytes, warp, lane, q);
    __syncwarp();
    if (lane == 0) mbarrier_arrive(pipe.q_empty());

    Output o;
#pragma unroll
    for (int j = 0; j < kHeadDim / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
    OnlineSoftmax softmax;
    const int q_begin = first.q_begin + 64 * consumer;
    const int q_rows = first.q_rows - 64 * consumer;
    // Paired rows: this consumer's row keeps `tiles` of the item's stages (maybe none).
    const int owner_bit = 1 << consumer;
    const int tiles = Traits::kPaired && consumer == 1 ? first.tiles_second : first.tiles;
    if constexpr (Traits::kPaired) {
      if (tiles == 0) {
        store(p, first.batch, first.head, q_begin, q_rows, o, softmax, warp, lane, scale);
        release_rest(pipe, ring, 0, lane);
        return;
      }
      skip_to_owned(pipe, ring, owner_bit, lane);
    }
    Scores s_a, s_b;
    TileInfo current = TileInfo::of(*pipe.record(ring.stage));
    if (current.gathered) fence_proxy_async_shared();
    issue_scores(q, pipe.k_tile(ring.stage), s_a);
    wgmma_wait<0>();
    fence_operands(s_a);
    if (lane == 0) mbarrier_arrive(pipe.k_empty(ring.stage));
    // Pairs of tiles that both have a successor, then the last one or two: has_next is a
    // constant in every copy of the step, which keeps the wgmma pipeline free of serialisation.
    int t = 0;
#pragma unroll 1
    for (; t + 2 < tiles; t += 2) {
      step<true>(p, pipe, ring, q, s_a, s_b, o, softmax, current, owner_bit, lane);
      step<true>(p, pipe, ring, q, s_b, s_a, o, softmax, current, owner_bit, lane);
    }
    if (tiles - t == 2) {
      step<true>(p, pipe, ring, q, s_a, s_b, o, softmax, current, owner_bit, lane);
      step<false>(p, pipe, ring, q, s_b, s_a, o, softmax, current, owner_bit, lane);
    } else {
      step<false>(p, pipe, ring, q, s_a, s_b, o, softmax, current, owner_bit, lane);
    }
    if (!Traits::kPaired && first.split_part >= 0)
      store_part(p, first.split_part, q_rows, o, softmax, warp, lane, scale);
    else
      store(p, first.batch, first.head, q_begin, q_rows, o, softmax, warp, lane, scale);
    if constexpr (Traits::kPaired) release_rest(pipe, ring, current.owners, lane);
  }

  // Tile t in `s` (complete, its K released); issues S(t+1) into `s_next` first when the item
  // has one, so it runs during the softmax of tile t; then O += P(t) V(t). Both halves of a
  // stage go back to the producer as soon as their products have completed: K(t+1) here, a
  // tile before its V.
  template <bool kHasNext>
  __device__ static void step(const SparseAttentionParams& p, const Pipeline<Traits>& pipe,
                              RingPosition& ring, const QFragments& q, Scores& s, Scores& s_next,
                              Output& o, OnlineSoftmax& softmax, TileInfo& current, int owner_bit,
                              int lane) {
    const int stage = ring.stage;
    const uint32_t phase = ring.phase;
    ring.advance<Traits::kStages>();
    TileInfo next{};
    if constexpr (kHasNext) {
      if constexpr (Traits::kPaired)
        skip_to_owned(pipe, ring, owner_bit, lane);
      else
        mbarrier_wait(pipe.k_full(ring.stage), ring.phase);
      next = TileInfo::of(*pipe.record(ring.stage));
      if (next.gathered) fence_proxy_async_shared();
      issue_scores(q, pipe.k_tile(ring.stage), s_next);
    }
    if (current.valid < 64) OnlineSoftmax::mask_tail(s, current.valid, lane);
    softmax.update(s, o, p.scale_log2);
    mbarrier_wait(pipe.v_full(stage), phase);
    if (current.gathered) fence_proxy_async_shared();
    Sm90Mainloop<Traits>::issue_pv(s, pipe.v_tile(stage), o);
    wgmma_wait<0>();  // S(t+1) and O += P(t) V(t)
    fence_operands(o);
    if (lane == 0) mbarrier_arrive(pipe.v_empty(stage));
    if constexpr (kHasNext) {
      fence_operands(s_next);
      if (lane == 0) mbarrier_arrive(pipe.k_empty(ring.stage));
      current = next;
    }
  }

  // A fragments of S = Q K^T for this warp's 16 rows, k-step kk: the m16n8k16 A layout, read by
  // ldmatrix from the 128-byte swizzled tile the TMA wrote.
  __device__ static void load_q(uint32_t smem_q, int warp, int lane, QFragments& q) {
    const int row = warp * 16 + (lane & 15);
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk)
      ldmatrix_x4(smem_q + Layout::offset(row, 2 * kk + (lane >> 4)), q[kk]);
  }

  __device__ static void issue_scores(const QFragments& q, uint32_t smem_k, Scores& s) {
    // Descriptors of one stage differ only in their start address field (16-byte units).
    const uint64_t base = sw128_descriptor(smem_k, 16, 8 * 128);
    fence_operands(s);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) {
      const uint32_t offset = (kk / 4) * Layout::kColumnBlockBytes + (kk % 4) * 32;
      Wgmma<Element, 64>::rs_k_major(s, q[kk], base + (offset >> 4), kk > 0);
    }
    wgmma_commit();
  }

  // Each of this thread's two rows below q_rows, normalised: pair(row, j, lo, hi) takes columns
  // 8 j + 2 (lane & 3) and the next, lse(row, value) the row's LSE (-inf without a kept key) once
  // per quad.
  template <class Pair, class Lse>
  __device__ static void for_normalised_rows(int q_rows, Output& o, OnlineSoftmax& softmax,
                                             int warp, int lane, float scale, Pair&& pair,
                                             Lse&& lse) {
    softmax.quad_sum();
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int row = warp * 16 + lane / 4 + half * 8;
      if (row >= q_rows) continue;
      const float sum = softmax.row_sum[half];
      const float inverse = sum > 0.f ? __frcp_rn(sum) : 0.f;
#pragma unroll
      for (int j = 0; j < kHeadDim / 8; ++j)
        pair(row, j, o[j][2 * half] * inverse, o[j][2 * half + 1] * inverse);
      if ((lane & 3) == 0)
        lse(row, sum > 0.f ? softmax.row_max[half] * scale + logf(sum) : -kInfinity);
    }
  }

  // Half of a split row: O / row sum in fp32 and the LSE into its part of the split scratch,
  // where the merge after the kernel finds them (SparseAttentionParams::split_out).
  __device__ static void store_part(const SparseAttentionParams& p, int part, int q_rows, Output& o,
                                    OnlineSoftmax& softmax, int warp, int lane, float scale) {
    float* rows = p.split_out + int64_t{part} * 64 * kHeadDim + 2 * (lane & 3);
    for_normalised_rows(
        q_rows, o, softmax, warp, lane, scale,
        [&](int row, int j, float lo, float hi) {
          *reinterpret_cast<float2*>(rows + row * kHeadDim + 8 * j) = make_float2(lo, hi);
        },
        [&](int row, float value) { p.split_lse[int64_t{part} * 64 + row] = value; });
  }

  // O / row sum and the LSE, straight from registers: each quad writes 16 contiguous bytes of a
  // row per column tile. Rows past q_rows (a short last block) are not written.
  __device__ static void store(const SparseAttentionParams& p, int batch, int head, int q_begin,
                               int q_rows, Output& o, OnlineSoftmax& softmax, int warp, int lane,
                               float scale) {
    const int64_t token_stride = int64_t{p.heads} * kHeadDim;
    Element* rows = static_cast<Element*>(p.out) +
                    (int64_t{batch} * p.seq_q + q_begin) * token_stride + int64_t{head} * kHeadDim +
                    2 * (lane & 3);
    for_normalised_rows(
        q_rows, o, softmax, warp, lane, scale,
        [&](int row, int j, float lo, float hi) {
          *reinterpret_cast<uint32_t*>(rows + row * token_stride + 8 * j) = Ops::pack(lo, hi);
        },
        [&](int row, float value) {
          if (p.lse != nullptr)
            p.lse[(int64_t{batch} * p.heads + head) * p.seq_q + q_begin + row] = value;
        });
  }
};

}  // namespace dbsp::cuda::detail
