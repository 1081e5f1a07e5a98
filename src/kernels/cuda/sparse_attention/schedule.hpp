// Device-side work ordering for the persistent sparse attention kernel: heads (batch x head
// groups) by descending total work, and inside a head the 64-query tiles longest first, so the
// CTAs that finish early pick up short tiles and one head's K/V stays hot in L2.
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/common/device_buffer.hpp"
#include "kernels/cuda/sparse_attention/params.hpp"

namespace dbsp::cuda::detail {

class WorkScheduler {
 public:
  WorkScheduler() = default;
  WorkScheduler(int num_items, int groups);

  // Writes order() from the row lengths in `params` (its mask fields); async, no host sync. With
  // attach_splits() on `params` first, long rows of block lists (at least `min_split_blocks`
  // key blocks) are split in halves (see SparseAttentionParams::split_slot) for `slots`
  // consumers working at once.
  void build(const SparseAttentionParams& params, cudaStream_t stream, int slots = 0,
             int min_split_blocks = 2);
  const int32_t* order() const { return order_.get<int32_t>(); }
  int* counter() const { return counter_.get<int>(); }

  // Enables split rows for up to `capacity` rows of `head_dim` (0: disables): the tables and the
  // halves' scratch are allocated here, once per capacity.
  void enable_splits(int capacity, int head_dim);
  // Points `params` at the split tables and scratch (nothing when splits are off).
  void attach_splits(SparseAttentionParams& params) const;
  // After the kernel: merges each split row's halves into `params`' output and LSE.
  void merge_splits(const SparseAttentionParams& params, bool fp16, cudaStream_t stream) const;

  // A row splits when it holds more than 1 / kPiecesPerSlot of a consumer's even share of the
  // kernel's key tiles: simulated on 720p heads (BENCHMARKS.md, session 14), halving rows over
  // about a sixth of the share brings a lone head's makespan within 2% of the even split.
  static constexpr int kPiecesPerSlot = 6;

 private:
  void size_sort(int items);  // the sort's buffers for `items` items

  int num_items_ = 0;
  int groups_ = 0;
  int split_capacity_ = 0;
  int split_head_dim_ = 0;
  DeviceBuffer split_slot_;   // [num_items] int32
  DeviceBuffer split_item_;   // [capacity] int32
  DeviceBuffer split_count_;  // [1] int, then [1] unsigned long long total tiles (8-aligned)
  DeviceBuffer split_out_;    // [2 capacity][64][head_dim] fp32
  DeviceBuffer split_lse_;    // [2 capacity][64] fp32
  size_t sort_temp_bytes_ = 0;
  DeviceBuffer group_work_;  // [groups] unsigned long long
  DeviceBuffer group_rank_;  // [groups] int
  DeviceBuffer keys_in_;     // [num_items] uint64: (group rank, inverted length)
  DeviceBuffer keys_out_;
  DeviceBuffer items_in_;  // [num_items] int32
  DeviceBuffer order_;     // [num_items] int32
  DeviceBuffer sort_temp_;
  DeviceBuffer counter_;  // [1] int, the persistent kernel's work counter
};

}  // namespace dbsp::cuda::detail
