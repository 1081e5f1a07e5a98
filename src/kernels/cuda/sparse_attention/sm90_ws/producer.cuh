// Producer warps of the warp-specialised kernel. The K warp takes work items from the persistent
// work list, writes the empty items' outputs itself, and for the others writes each stage's
// record and loads Q and every K tile; the V warp follows the records and loads every V tile.
// Each half of a stage is loaded as soon as it is free: contiguous tiles by TMA (one thread, a
// few instructions), key lists by cp.async row gathers of the whole warp (two full rows, 512
// bytes, per instruction), rows past the valid prefix zero-filled. A record of -1 tiles ends the
// pipeline.
#pragma once

#include <cstdint>

#include "kernels/cuda/common/async_copy.cuh"
#include "kernels/cuda/common/ptx.cuh"
#include "kernels/cuda/sparse_attention/sm90_ws/mode.hpp"
#include "kernels/cuda/sparse_attention/sm90_ws/pipeline.cuh"
#include "kernels/cuda/sparse_attention/sm90_ws/tensor_maps.hpp"
#include "kernels/cuda/sparse_attention/smem_layout.cuh"
#include "kernels/cuda/sparse_attention/work_item.cuh"
#include "kernels/cuda/sparse_attention/work_list.cuh"

namespace dbsp::cuda::detail {

template <class Traits>
struct WsProducer {
  using Element = typename Traits::Element;
  using Layout = Sw128Columns<64>;
  static constexpr int kHeadDim = Traits::kHeadDim;
  static constexpr int kChunks = kHeadDim / 8;       // 16-byte chunks per row
  static constexpr int kRowsPerCopy = 32 / kChunks;  // rows one warp-wide cp.async covers
  static constexpr int kColumnBlockBytes = Layout::kColumnBlockBytes;

  // The item's rows and key tiles: shared-key dense items cover 128 queries; separate items and
  // paired rows are WorkItem::make's, as in the single-warpgroup kernels.
  __device__ static WorkItem item_at(const SparseAttentionParams& p, int item) {
    if constexpr (Traits::kMode != WsMode::shared_dense) {
      return WorkItem::make(p, item);
    } else {
      WorkItem w;
      const int q_tiles = (p.seq_q + Traits::kItemRows - 1) / Traits::kItemRows;
      const int batch_head = item / q_tiles;
      w.batch = batch_head / p.heads;
      w.head = batch_head - w.batch * p.heads;
      w.q_begin = (item - batch_head * q_tiles) * Traits::kItemRows;
      const int rows = p.seq_q - w.q_begin;
      w.q_rows = rows > Traits::kItemRows ? Traits::kItemRows : rows;
      w.block_tiles = (p.seq_k + 63) / 64;
      return w;
    }
  }

  // Paired rows: the union of the two rows' key-block lists, merged (equal heads are one stage
  // for both rows). Every list entry is visited exactly once and each row's entries in their list
  // order, so unsorted lists stay correct and the results equal those of separate items, bit for
  // bit; only the interleaving of the two rows is chosen here. The consumers share one ring, so
  // a row that runs ahead in the union leaves the other one idle once the ring is full: a stage
  // of one row alone goes to the row that is behind when the other leads by kLead tiles (the
  // other row's head then goes first, out of merge order; a block both rows keep may then be
  // loaded twice). And a consumer issues S of its next tile before it releases its current V, so
  // once a row has started, at most kMaxRun stages in a row may lack it while it has entries left
  // (more would wrap the ring onto the stage it holds). The next entries are read a stage ahead.
  struct PairCursor {
    static constexpr int kNone = 0x7fffffff;
    static constexpr int kMaxRun = Traits::kStages - 2;
    static constexpr int kLead = 2;
    const int32_t* list_a;
    const int32_t* list_b;
    int left_a, left_b;                  // entries after next_a / next_b
    int next_a, next_b;                  // kNone once a list is used up
    int run_a = -kNone, run_b = -kNone;  // stages since the row's last one (negative: not started)
    int taken_a = 0, taken_b = 0;        // the rows' stages so far

    __device__ PairCursor(const SparseAttentionParams& p, const WorkItem& w)
        : list_a(p.kv_index + w.block_list),
          list_b(p.kv_index + w.block_list_b),
          left_a(w.block_tiles),
          left_b(w.block_tiles_b),
          next_a(pop(list_a, left_a)),
          next_b(pop(list_b, left_b)) {}

    __device__ static int pop(const int32_t*& list, int& left) {
      if (left == 0) return kNone;
      --left;
      return __ldg(list++);
    }
    // The next stage's key block and owners (with kLastOfItem when nothing follows).
    __device__ int take(int& owners) {
      int block = min(next_a, next_b);
      if (next_a != kNone && run_a >= kMaxRun) {
        block = next_a;
      } else if (next_b != kNone && run_b >= kMaxRun) {
        block = next_b;
      } else if (next_a != next_b) {
        if (next_a == block && next_b != kNone && taken_a - taken_b >= kLead) block = next_b;
        if (next_b == block && next_a != kNone && taken_b - taken_a >= kLead) block = next_a;
      }
      owners = (next_a == block ? 1 : 0) | (next_b == block ? 2 : 0);
      run_a = (owners & 1) ? 0 : run_a + 1;
      run_b = (owners & 2) ? 0 : run_b + 1;
      taken_a += owners & 1;
      taken_b += owners >> 1;
      if (owners & 1) next_a = pop(list_a, left_a);
      if (owners & 2) next_b = pop(list_b, left_b);
      if ((next_a & next_b) == kNone) owners |= StageRecord::kLastOfItem;
      return block;
    }
  };

  // Warp 0 of a paired-rows CTA: items (two rows), Q of both, the stage records and the K tiles
  // of the union of the rows' key blocks.
  __device__ static void run_paired(const SparseAttentionParams& p, const TmaMaps& maps,
                                    const Pipeline<Traits>& pipe, int lane) {
    RingPosition ring;
    uint32_t q_phase = 0;
    for (;;) {
      const int position = claim_position(p, lane);
      if (position >= total_items(p)) break;
      const WorkItem w = item_at(p, scheduled_item(p, position));
      if (w.q_rows <= 0) continue;
      if (w.block_tiles + w.block_tiles_b == 0) {
        store_empty(p, w, lane);
        continue;
      }
      load_q(maps, pipe, w, q_phase, lane);
      q_phase ^= 1;
      PairCursor cursor(p, w);
      int owners = 0;
      do {
        const int block = cursor.take(owners);
        KeyTile tile;
        tile.first_token = WorkItem::block_start(p.k_block_start, block, 64, p.seq_k);
        const int rows =
            WorkItem::block_start(p.k_block_start, block + 1, 64, p.seq_k) - tile.first_token;
        tile.valid = rows > 64 ? 64 : rows;
        mbarrier_wait(pipe.k_empty(ring.stage), ring.phase ^ 1);
        if (lane == 0) {
          StageRecord* record = pipe.record(ring.stage);
          write_record(record, w, w.block_tiles, tile);
          *reinterpret_cast<int2*>(&record->owners) = make_int2(owners, w.block_tiles_b);
          mbarrier_arrive(pipe.record_full(ring.stage));
        }
        load_box(pipe.k_tile(ring.stage), pipe.k_full(ring.stage), maps.k, w.batch, w.head,
                 tile.first_token, lane);
        ring.advance<Traits::kStages>();
      } while ((owners & StageRecord::kLastOfItem) == 0);
    }
    finish(pipe, ring, lane);
  }

  // Warp i: items, Q, the stage records and every K tile.
  __device__ static void run(const SparseAttentionParams& p, const TmaMaps& maps,
                             const Pipeline<Traits>& pipe, int lane) {
    RingPosition ring;
    uint32_t q_phase = 0;
    for (;;) {
      const int position = claim_position(p, lane);
      if (position >= total_items(p)) break;
      const WorkItem w = item_at(p, scheduled_item(p, position));
      if (w.q_rows <= 0) continue;
      const int tiles = w.tiles();
      if (tiles == 0) {
        store_empty(p, w, lane);
        continue;
      }
      load_q(maps, pipe, w, q_phase, lane);
      q_phase ^= 1;
      KeyTile tile = w.tile(p, 0);
      RowTokens tokens = RowTokens::of(tile.gathered, tile.valid, lane);
      for (int t = 0; t < tiles; ++t) {
        // The next tile's list entries are read before this tile's waits: their latency hides.
        const KeyTile next = t + 1 < tiles ? w.tile(p, t + 1) : tile;
        const RowTokens next_tokens =
            t + 1 < tiles ? RowTokens::of(next.gathered, next.valid, lane) : tokens;
        mbarrier_wait(pipe.k_empty(ring.stage), ring.phase ^ 1);
        if (lane == 0) {
          write_record(pipe.record(ring.stage), w, tiles, tile);
          mbarrier_arrive(pipe.record_full(ring.stage));
        }
        if (tile.gathered == nullptr)
          load_box(pipe.k_tile(ring.stage), pipe.k_full(ring.stage), maps.k, w.batch, w.head,
                   tile.first_token, lane);
        else
          gather(p, pipe.k_tile(ring.stage), pipe.k_full(ring.stage), p.k, w.batch, w.head,
                 tile.valid, tokens, lane);
        ring.advance<Traits::kStages>();
        tile = next;
        tokens = next_tokens;
      }
    }
    finish(pipe, ring, lane);
  }

  // Warp i + 2: follows the ring through the records the K warp writes and loads every V tile,
  // so a stage's two halves are issued by two warps at once (for key lists, issuing the row
  // copies is the producer's bottleneck).
  __device__ static void run_v(const SparseAttentionParams& p, const TmaMaps& maps,
                               const Pipeline<Traits>& pipe, int lane) {
    RingPosition ring;
    for (;;) {
      mbarrier_wait(pipe.record_full(ring.stage), ring.phase);
      const StageRecord& record = *pipe.record(ring.stage);
      const int tiles = record.tiles;
      const int batch = record.batch, head = record.head, valid = record.valid;
      const int first_token = record.first_token;
      const int32_t* keys = record.gathered ? record.keys : nullptr;
      if (tiles < 0) return;
      __syncwarp();
      if (lane == 0) mbarrier_arrive(pipe.k_empty(ring.stage));  // the record has been read
      const RowTokens tokens = RowTokens::of(keys, valid, lane);
      mbarrier_wait(pipe.v_empty(ring.stage), ring.phase ^ 1);
      if (keys == nullptr)
        load_box(pipe.v_tile(ring.stage), pipe.v_full(ring.stage), maps.v, batch, head, first_token,
                 lane);
      else
        gather(p, pipe.v_tile(ring.stage), pipe.v_full(ring.stage), p.v, batch, head, valid, tokens,
               lane);
      ring.advance<Traits::kStages>();
    }
  }

 private:
  // The warp's next position in the persistent work list: lane 0 claims it, every lane gets it.
  __device__ __forceinline__ static int claim_position(const SparseAttentionParams& p, int lane) {
    int position = 0;
    if (lane == 0) position = atomicAdd(p.work_counter, 1);
    return __shfl_sync(0xffffffffu, position, 0);
  }

  // No more items: a record of -1 tiles in the next stage (consumers and V producer read it).
  __device__ static void finish(const Pipeline<Traits>& pipe, const RingPosition& ring, int lane) {
    mbarrier_wait(pipe.k_empty(ring.stage), ring.phase ^ 1);
    if (lane == 0) {
      pipe.record(ring.stage)->tiles = -1;
      mbarrier_arrive(pipe.record_full(ring.stage));
      mbarrier_arrive(pipe.k_full(ring.stage));
    }
  }

  __device__ static void write_record(StageRecord* record, const WorkItem& w, int tiles,
                                      const KeyTile& tile) {
    int4* words = reinterpret_cast<int4*>(record);
    words[0] = make_int4(w.batch, w.head, w.q_begin, w.q_rows);
    words[1] = make_int4(tiles, tile.valid, tile.first_token, tile.gathered != nullptr ? 1 : 0);
    record->keys = tile.gathered;
    record->split_part = w.split_part;
  }

  __device__ static void load_q(const TmaMaps& maps, const Pipeline<Traits>& pipe,
                                const WorkItem& w, uint32_t q_phase, int lane) {
    mbarrier_wait(pipe.q_empty(), q_phase ^ 1);
    if (lane != 0) return;
    mbarrier_arrive_expect_tx(pipe.q_full(), Traits::kQBytes);
#pragma unroll
    for (int c = 0; c < Traits::kConsumersPerPipeline; ++c)
#pragma unroll
      for (int b = 0; b < Traits::kColumnBlocks; ++b)
        tma_load_4d(pipe.q + c * Traits::kTileBytes + b * kColumnBlockBytes, &maps.q, pipe.q_full(),
                    b * 64, w.head, w.q_begin + 64 * c, w.batch);
  }

  // Tokens of a key-list tile's rows lane and lane + 32 (clamped into the list; unused rows are
  // zero-filled), read ahead of the copies.
  struct RowTokens {
    int low = 0, high = 0;
    __device__ static RowTokens of(const int32_t* keys, int valid, int lane) {
      RowTokens tokens;
      if (keys != nullptr) {
        const int last = valid - 1;  // >= 0: key-list tiles are never empty
        tokens.low = __ldg(keys + min(lane, last));
        tokens.high = __ldg(keys + min(lane + 32, last));
      }
      return tokens;
    }
  };

  // A contiguous K or V tile by TMA (lane 0): rows past the valid prefix come from the
  // neighbouring tokens (finite inputs) or, past the end of the sequence, are zeros; the
  // consumers give them probability 0.
  __device__ static void load_box(uint32_t smem, uint32_t full, const CUtensorMap& map, int batch,
                                  int head, int first_token, int lane) {
    if (lane != 0) return;
    mbarrier_arrive_expect_tx(full, Traits::kTileBytes);
#pragma unroll
    for (int b = 0; b < Traits::kColumnBlocks; ++b)
      tma_load_4d(smem + b * kColumnBlockBytes, &map, full, b * 64, head, first_token, batch);
  }

  // A key-list K or V tile: each warp-wide cp.async moves kRowsPerCopy whole rows (coalesced), its
  // token fetched from the lane that holds it; rows past the valid prefix are zero-filled without
  // reading memory. Completes on `full` once every lane's copies have landed.
  __device__ static void gather(const SparseAttentionParams& p, uint32_t smem, uint32_t full,
                                const void* tensor, int batch, int head, int valid,
                                const RowTokens& tokens, int lane) {
    // Per-lane terms come from an opaque copy of the lane, so the compiler recomputes them here
    // instead of keeping 32 row addresses live across the producer's loops.
    const int lane_here = opaque(lane);
    const int chunk = lane_here % kChunks;
    const int sub_row = lane_here / kChunks;
    const int token_bytes = p.heads * kHeadDim * 2;  // < 2^31 bytes per batch (API check)
    const char* source = static_cast<const char*>(tensor) +
                         (int64_t{batch} * p.seq_k * p.heads + head) * kHeadDim * 2 + chunk * 16;
    // Rows go in groups of 8 (one swizzle atom): row = 8 g + u * kRowsPerCopy + sub_row, whose
    // row & 7 = u * kRowsPerCopy + sub_row needs no carry, so the XOR term is fixed per u.
    const uint32_t lane_smem = smem + (chunk >> 3) * kColumnBlockBytes + sub_row * 128;
    constexpr int kCopiesPerAtom = 8 / kRowsPerCopy;
#pragma unroll 2
    for (int g = 0; g < 8; ++g) {
      const int holder = g < 4 ? tokens.low : tokens.high;  // rows 0-31 low, 32-63 high
#pragma unroll
      for (int u = 0; u < kCopiesPerAtom; ++u) {
        const int row = 8 * g + u * kRowsPerCopy + sub_row;
        const int token = __shfl_sync(0xffffffffu, holder, row & 31);
        const bool row_valid = row < valid;
        const uint32_t swizzle = ((chunk & 7) ^ (u * kRowsPerCopy + sub_row)) << 4;
        cp_async_16(lane_smem + g * 1024 + u * kRowsPerCopy * 128 + swizzle,
                    source + (row_valid ? token * token_bytes : 0), row_valid);
      }
    }
    cp_async_mbarrier_arrive(full);
    __syncwarp();  // every lane's copies are tracked before the phase can complete
    if (lane == 0) mbarrier_arrive(full);
  }

  // An item whose row lists are empty: zeros and -inf, written by this warp.
  __device__ static void store_empty(const SparseAttentionParams& p, const WorkItem& w, int lane) {
    Element* out = static_cast<Element*>(p.out);
    const int64_t token_stride = int64_t{p.heads} * kHeadDim;
    const int64_t base =
        (int64_t{w.batch} * p.seq_q + w.q_begin) * token_stride + int64_t{w.head} * kHeadDim;
    for (int i = lane; i < w.q_rows * kChunks; i += 32)
      *reinterpret_cast<uint4*>(out + base + (i / kChunks) * token_stride + (i % kChunks) * 8) =
          make_uint4(0, 0, 0, 0);
    if (p.lse != nullptr)
      for (int row = lane; row < w.q_rows; row += 32)
        p.lse[(int64_t{w.batch} * p.heads + w.head) * p.seq_q + w.q_begin + row] = -kInfinity;
  }
};

}  // namespace dbsp::cuda::detail
