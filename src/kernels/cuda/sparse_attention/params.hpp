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
};

}  // namespace dbsp::cuda::detail
