// Device-side helpers of the attention benchmark: random bf16/fp16 fills, fine (FG-Attn) key
// lists thinned from block lists on the GPU (at 720p they hold billions of keys), and a count of
// non-finite outputs (the full-size poison check).
#pragma once

#include <cstdint>
#include <vector>

#include "dbsp/cuda_attention.hpp"

namespace dbsp::bench {

// Fills count elements with seeded values of about unit variance.
void fill_random(cuda::DType dtype, void* data, int64_t count, uint64_t seed);
// Number of NaN/inf elements among count.
int64_t count_nonfinite(cuda::DType dtype, const void* data, int64_t count);

// Key lists on the device: per row, each key of the row's blocks kept with probability
// keep_probability (seeded hash), ascending. Rows follow the block lists' row order.
struct DeviceKeyLists {
  int64_t* row_offset = nullptr;  // [rows + 1]
  int32_t* key_index = nullptr;   // [row_offset[rows]]
  int64_t total_keys = 0;
  std::vector<int64_t> host_row_offset;  // copy, for work accounting and checks
  DeviceKeyLists() = default;
  DeviceKeyLists(const DeviceKeyLists&) = delete;
  DeviceKeyLists& operator=(const DeviceKeyLists&) = delete;
  ~DeviceKeyLists();
};
void thin_blocks_to_keys(const int32_t* kv_count, const int64_t* block_row_offset,
                         const int32_t* kv_index, int rows, int block_k, int64_t seq_k,
                         double keep_probability, uint64_t seed, DeviceKeyLists& out);

}  // namespace dbsp::bench
