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

  // Writes order() from the row lengths in `params` (its mask fields); async, no host sync.
  void build(const SparseAttentionParams& params, cudaStream_t stream);
  const int32_t* order() const { return order_.get<int32_t>(); }
  int* counter() const { return counter_.get<int>(); }

 private:
  int num_items_ = 0;
  int groups_ = 0;
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
