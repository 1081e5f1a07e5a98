// Plain-data arguments of the sparse attention kernel, filled on the host by the launcher's
// caller and passed by value; shared by the host dispatch (api.cpp) and the device code.
#pragma once

#include <cstdint>

namespace dbsp::cuda::detail {

struct SparseAttentionParams {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  float* lse = nullptr;  // may be null

  int batch = 1;
  int heads = 1;
  int seq_q = 0;
  int seq_k = 0;
  float scale_log2 = 0.f;  // softmax scale * log2(e): the kernel works in base 2

  // Mask rows: q_blocks per head, each covering tiles_per_q_block tiles of 64 queries.
  int q_blocks = 0;
  int block_q = 64;
  int tiles_per_q_block = 1;
  bool dense = false;
  int block_k = 64;
  int tiles_per_k_block = 1;
  int k_tile_shift = 0;  // log2(tiles_per_k_block): block_k is 64 x a power of two
  int k_blocks = 0;
  const int32_t* kv_count = nullptr;
  const int64_t* block_row_offset = nullptr;
  const int32_t* kv_index = nullptr;
  const int64_t* key_row_offset = nullptr;
  const int32_t* key_index = nullptr;
  const int32_t* key_count = nullptr;  // optional: fixed-capacity key rows
  const int64_t* q_block_start = nullptr;
  const int64_t* k_block_start = nullptr;

  // Paired rows (warp-specialised kernel, block lists with block_q = block_k = 64 and uniform
  // blocks): an item is two adjacent mask rows, q blocks 2i and 2i + 1 (128 queries).
  bool pair_rows = false;

  // Work: item = (batch * heads + head) * items_per_head + item in the head, items_per_head =
  // q_blocks * tiles_per_q_block (or ceil(q_blocks / 2) pairs). work_order (may be null: natural
  // order) lists items in the order the persistent CTAs take them.
  int num_items = 0;
  const int32_t* work_order = nullptr;
  int* work_counter = nullptr;  // zeroed before each launch

  // Split long rows (warp-specialised kernel, unpaired block-list items; SparseAttention::
  // split_long_rows): item i < num_items whose split_slot[i] = s >= 0 computes the first half of
  // its key blocks, and item num_items + s (s < *split_count) the second half of split_item[s]'s.
  // Both halves write O (normalised, fp32) and LSE to parts 2 s and 2 s + 1 of split_out /
  // split_lse ([part][64][head_dim], [part][64]); a merge writes the item's rows after the kernel.
  // Items num_items + s with s >= *split_count have no rows.
  int split_capacity = 0;
  const int32_t* split_slot = nullptr;
  const int32_t* split_item = nullptr;
  const int* split_count = nullptr;
  float* split_out = nullptr;
  float* split_lse = nullptr;
};

// Items of the persistent work list: every row's item, then the second halves of split rows.
// constexpr so that device code may call it too (--expt-relaxed-constexpr).
constexpr int total_items(const SparseAttentionParams& p) { return p.num_items + p.split_capacity; }

}  // namespace dbsp::cuda::detail
