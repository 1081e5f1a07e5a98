// The persistent work list: CTAs (or, in the warp-specialised kernel, a producer warp) take
// positions from a device counter and map them through the schedule's order to work items.
#pragma once

#include "kernels/cuda/sparse_attention/epilogue.cuh"
#include "kernels/cuda/sparse_attention/params.hpp"
#include "kernels/cuda/sparse_attention/work_item.cuh"

namespace dbsp::cuda::detail {

// The item at `position` of the schedule; without a work order, the natural order.
__device__ __forceinline__ int scheduled_item(const SparseAttentionParams& p, int position) {
  return p.work_order != nullptr ? p.work_order[position] : position;
}

// The loop of the kernels whose whole CTA works on one item at a time: thread 0 claims the next
// position into the shared `slot`, items without rows are skipped, items without key tiles are
// written as empty, and `attend(w)` runs the others.
template <class Traits, class Attend>
__device__ __forceinline__ void for_each_cta_item(const SparseAttentionParams& p, int* slot,
                                                  Attend&& attend) {
  for (;;) {
    if (threadIdx.x == 0) *slot = atomicAdd(p.work_counter, 1);
    __syncthreads();
    const int position = *slot;
    if (position >= p.num_items) break;
    const WorkItem w = WorkItem::make(p, scheduled_item(p, position));
    if (w.q_rows > 0) {
      if (w.tiles() == 0)
        Epilogue<Traits>::store_empty(p, w, threadIdx.x);
      else
        attend(w);
    }
    __syncthreads();  // the next item's prologue overwrites shared memory and the slot
  }
}

}  // namespace dbsp::cuda::detail
