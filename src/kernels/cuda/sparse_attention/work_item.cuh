// The sparsity policy: what one work item (batch, head, 64-query tile) covers and which key
// tiles it visits. Block lists and key lists (FG-Attn) become one sequence of 64-key tiles whose
// valid rows are always a prefix, so the mainloop masks only `column >= valid` and never branches
// on where a tile came from except when it asks for the token of a row.
#pragma once

#include <cstdint>

#include "kernels/cuda/sparse_attention/params.hpp"

namespace dbsp::cuda::detail {

struct KeyTile {
  int valid = 0;        // rows [0, valid) hold keys; may be <= 0 for a tile past the end
  int first_token = 0;  // contiguous tiles: token of row 0
  const int32_t* gathered = nullptr;  // key-list tiles: token of row r is gathered[r]

  __device__ __forceinline__ int token(int row) const {
    return gathered != nullptr ? __ldg(gathered + row) : first_token + row;
  }
};

__host__ __device__ inline int items_per_head(const SparseAttentionParams& p) {
  return p.pair_rows ? (p.q_blocks + 1) / 2 : p.q_blocks * p.tiles_per_q_block;
}

struct WorkItem {
  int batch = 0;
  int head = 0;
  int q_begin = 0;  // first query token of the tile
  int q_rows = 0;   // valid query rows (<= 64; 0: nothing to do)
  int block_tiles = 0;
  int key_tiles = 0;
  int64_t block_list = 0;  // offset of the row's block list in kv_index
  int64_t key_list = 0;    // offset of the row's key list in key_index
  int key_count = 0;
  // Paired rows: the second row's block list (q block 2i + 1; 0 tiles when it does not exist).
  int block_tiles_b = 0;
  int64_t block_list_b = 0;
  // Split rows (SparseAttentionParams::split_slot): the part this item writes, 2 s for the first
  // half of the row's key blocks and 2 s + 1 for the second; -1: the item writes the output.
  int split_part = -1;

  // Key tiles the item's consumers compute (paired rows: both rows' tiles).
  __device__ __forceinline__ int tiles() const { return block_tiles + block_tiles_b + key_tiles; }

  // Token start of a block (32-bit: the API keeps sequences below 2^31 tokens).
  __device__ __forceinline__ static int block_start(const int64_t* starts, int block,
                                                    int block_size, int seq) {
    if (starts != nullptr) return static_cast<int>(starts[block]);
    const int start = block * block_size;
    return start < seq ? start : seq;
  }

  // Item `item` of the work list: a row's item (its first half when the row is split) or, past
  // num_items, a split row's second half.
  __device__ static WorkItem make(const SparseAttentionParams& p, int item) {
    if (item >= p.num_items) return make_second_half(p, item - p.num_items);
    WorkItem w = make_row(p, item);
    const int slot = p.split_slot != nullptr ? p.split_slot[item] : -1;
    if (slot >= 0) {
      w.block_tiles = first_half_blocks(p, w) * p.tiles_per_k_block;
      w.split_part = 2 * slot;
    }
    return w;
  }

  // Key blocks in a split row's first half (the larger one when the count is odd).
  __device__ static int first_half_blocks(const SparseAttentionParams& p, const WorkItem& w) {
    return (w.block_tiles / p.tiles_per_k_block + 1) / 2;
  }

  // The second half of split row `slot`; no rows past the rows split in this plan.
  __device__ static WorkItem make_second_half(const SparseAttentionParams& p, int slot) {
    if (p.split_count == nullptr || slot >= *p.split_count) return WorkItem{};
    WorkItem w = make_row(p, p.split_item[slot]);
    const int first = first_half_blocks(p, w);
    w.block_list += first;
    w.block_tiles -= first * p.tiles_per_k_block;
    w.split_part = 2 * slot + 1;
    return w;
  }

  // The whole row of item `item` (< num_items).
  __device__ static WorkItem make_row(const SparseAttentionParams& p, int item) {
    if (p.pair_rows) return make_pair(p, item);
    WorkItem w;
    const int tiles_per_head = p.q_blocks * p.tiles_per_q_block;
    const int batch_head = item / tiles_per_head;
    const int tile_in_head = item - batch_head * tiles_per_head;
    const int q_block = tile_in_head / p.tiles_per_q_block;
    const int sub_tile = tile_in_head - q_block * p.tiles_per_q_block;
    w.batch = batch_head / p.heads;
    w.head = batch_head - w.batch * p.heads;
    const int block_begin = block_start(p.q_block_start, q_block, p.block_q, p.seq_q);
    const int block_end = block_start(p.q_block_start, q_block + 1, p.block_q, p.seq_q);
    w.q_begin = block_begin + sub_tile * 64;
    const int rows = block_end - w.q_begin;
    w.q_rows = rows <= 0 ? 0 : (rows > 64 ? 64 : rows);
    if (p.dense) {
      w.block_tiles = (p.seq_k + 63) / 64;
      return w;
    }
    const int row = w.head * p.q_blocks + q_block;
    if (p.kv_count != nullptr) {
      w.block_tiles = p.kv_count[row] * p.tiles_per_k_block;
      w.block_list = p.block_row_offset[row];
    }
    if (p.key_row_offset != nullptr) {
      w.key_list = p.key_row_offset[row];
      w.key_count = p.key_count != nullptr
                        ? p.key_count[row]
                        : static_cast<int>(p.key_row_offset[row + 1] - w.key_list);
      w.key_tiles = (w.key_count + 63) / 64;
    }
    return w;
  }

  // Rows 2i and 2i + 1 of uniform 64-query blocks with block lists (SparseAttentionParams::
  // pair_rows): 128 queries from 128 i; the second row only where it holds queries.
  __device__ static WorkItem make_pair(const SparseAttentionParams& p, int item) {
    WorkItem w;
    const int pairs = (p.q_blocks + 1) / 2;
    const int batch_head = item / pairs;
    const int q_block = 2 * (item - batch_head * pairs);
    w.batch = batch_head / p.heads;
    w.head = batch_head - w.batch * p.heads;
    w.q_begin = q_block * 64;
    const int rows = p.seq_q - w.q_begin;
    w.q_rows = rows <= 0 ? 0 : (rows > 128 ? 128 : rows);
    const int row = w.head * p.q_blocks + q_block;
    w.block_tiles = p.kv_count[row];
    w.block_list = p.block_row_offset[row];
    if (q_block + 1 < p.q_blocks && rows > 64) {
      w.block_tiles_b = p.kv_count[row + 1];
      w.block_list_b = p.block_row_offset[row + 1];
    }
    return w;
  }

  __device__ KeyTile tile(const SparseAttentionParams& p, int t) const {
    KeyTile tile;
    if (t < block_tiles) {
      int begin, end;
      if (p.dense) {
        begin = t * 64;
        end = p.seq_k;
      } else {
        const int list_pos = t >> p.k_tile_shift;
        const int sub = t - (list_pos << p.k_tile_shift);
        const int block = __ldg(p.kv_index + block_list + list_pos);
        begin = block_start(p.k_block_start, block, p.block_k, p.seq_k) + sub * 64;
        end = block_start(p.k_block_start, block + 1, p.block_k, p.seq_k);
      }
      const int rows = end - begin;
      tile.valid = rows > 64 ? 64 : rows;
      tile.first_token = begin;
    } else {
      const int key_pos = (t - block_tiles) * 64;
      const int rows = key_count - key_pos;
      tile.valid = rows > 64 ? 64 : rows;
      tile.gathered = p.key_index + key_list + key_pos;
    }
    return tile;
  }
};

}  // namespace dbsp::cuda::detail
