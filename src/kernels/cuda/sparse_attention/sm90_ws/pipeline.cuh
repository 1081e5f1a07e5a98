// Shared memory of one producer -> consumer pipeline of the warp-specialised kernel: the Q tiles,
// a ring of K/V stages, their mbarriers and a small record per stage that tells the consumers
// which item and how many valid keys the stage holds. K and V of a stage are filled and freed
// separately: K is free once S = Q K^T has completed, a tile before V (free after O += P V), so
// the producer refills K a tile earlier than a joint release would allow. Ring position: stage
// index and phase parity, advanced together by every party that walks the ring.
#pragma once

#include <cstdint>

#include "kernels/cuda/common/async_copy.cuh"
#include "kernels/cuda/common/ptx.cuh"

namespace dbsp::cuda::detail {

// Written by the K producer before it signals the stage's record and K; read by the V producer
// (after the record signal) and the consumers (after K) before they release the stage's K.
// 16-byte aligned: the producer writes its first words as int4 vectors.
struct alignas(16) StageRecord {
  int batch;
  int head;
  int q_begin;
  int q_rows;           // valid queries of the item (up to 64 per consumer of the pipeline)
  int tiles;            // key tiles of the item; -1: no more work, everyone exits
  int valid;            // keys in rows [0, valid) of this stage
  int first_token;      // contiguous tiles: token of row 0
  int gathered;         // 1: rows arrive by cp.async (the consumer fences the async proxy)
  const int32_t* keys;  // key-list tiles: token of row r is keys[r]
  // Paired rows: bit c set when consumer c's row keeps the stage's key block, kLastOfItem on the
  // item's last stage; tiles counts consumer 0's row, tiles_second consumer 1's.
  int owners;
  int tiles_second;
  int split_part;  // WorkItem::split_part: where the consumers write the item's O and LSE
  static constexpr int kLastOfItem = 4;
};

struct RingPosition {
  int stage = 0;
  uint32_t phase = 0;
  template <int kStages>
  __device__ __forceinline__ void advance() {
    if (++stage == kStages) {
      stage = 0;
      phase ^= 1;
    }
  }
};

template <class Traits>
struct Pipeline {
  static constexpr int kStages = Traits::kStages;
  // Records after the 5 * kStages + 2 barriers, 32-byte aligned for vector loads.
  static constexpr int kRecordOffset = ((5 * kStages + 2) * 8 + 31) / 32 * 32;
  static_assert(kRecordOffset + kStages * sizeof(StageRecord) <=
                Traits::kBarrierBytes / Traits::kPipelines);
  // Two shared addresses; everything else is a fixed offset from them (fewer live registers in
  // the producer warps, which run on 64).
  uint32_t q;         // Q tiles (one per consumer of the pipeline), then the K/V stages
  uint32_t barriers;  // k_full, v_full, k_empty, v_empty, record [kStages each], q_full, q_empty

  __device__ static Pipeline at(char* smem, int index) {
    Pipeline pipe;
    const uint32_t base = shared_address(smem);
    pipe.q = base + index * Traits::kPipelineBytes;
    pipe.barriers = base + Traits::kPipelines * Traits::kPipelineBytes +
                    index * (Traits::kBarrierBytes / Traits::kPipelines);
    return pipe;
  }

  __device__ StageRecord* record(int stage) const {
    return static_cast<StageRecord*>(
        __cvta_shared_to_generic(barriers + kRecordOffset + stage * sizeof(StageRecord)));
  }
  // Stage s: K, then V.
  __device__ uint32_t k_tile(int stage) const {
    return q + Traits::kQBytes + stage * Traits::kStageBytes;
  }
  __device__ uint32_t v_tile(int stage) const { return k_tile(stage) + Traits::kTileBytes; }
  __device__ uint32_t k_full(int stage) const { return barriers + stage * 8; }
  __device__ uint32_t v_full(int stage) const { return barriers + (kStages + stage) * 8; }
  __device__ uint32_t k_empty(int stage) const { return barriers + (2 * kStages + stage) * 8; }
  __device__ uint32_t v_empty(int stage) const { return barriers + (3 * kStages + stage) * 8; }
  // The stage's record is written (the V producer starts from it, without waiting for K).
  __device__ uint32_t record_full(int stage) const { return barriers + (4 * kStages + stage) * 8; }
  __device__ uint32_t q_full() const { return barriers + 5 * kStages * 8; }
  __device__ uint32_t q_empty() const { return barriers + (5 * kStages + 1) * 8; }

  // One thread, before any other thread touches the pipeline. Full barriers expect one
  // arrival (the producer's, with the TMA byte count or after its tracked cp.async copies);
  // empty ones one per consumer warp, and K's also the V producer's (it reads the record).
  __device__ void init() const {
    constexpr int kConsumerWarps = 4 * Traits::kConsumersPerPipeline;
    for (int s = 0; s < kStages; ++s) {
      mbarrier_init(k_full(s), 1);
      mbarrier_init(v_full(s), 1);
      mbarrier_init(k_empty(s), kConsumerWarps + 1);
      mbarrier_init(v_empty(s), kConsumerWarps);
      mbarrier_init(record_full(s), 1);
    }
    mbarrier_init(q_full(), 1);
    mbarrier_init(q_empty(), kConsumerWarps);
  }
};

}  // namespace dbsp::cuda::detail
