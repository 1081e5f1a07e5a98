// CTA-wide reductions and scans with a fixed combination order (warp shuffles, then the warp
// totals in warp order), so estimation results do not depend on scheduling.
#pragma once

namespace dbsp::cuda::detail {

template <int kWarps, class T, class Op>
__device__ T cta_reduce(T value, Op op, T* scratch) {
  for (int offset = 16; offset > 0; offset /= 2)
    value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = value;
  __syncthreads();
  T total = scratch[0];
  for (int w = 1; w < kWarps; ++w) total = op(total, scratch[w]);
  __syncthreads();
  return total;
}

// Exclusive prefix of `value` over threads in thread order; `total` gets the sum of all.
template <int kWarps, class T>
__device__ T cta_exclusive_scan(T value, T* scratch, T& total) {
  const int lane = threadIdx.x % 32;
  T inclusive = value;
  for (int offset = 1; offset < 32; offset *= 2) {
    const T other = __shfl_up_sync(0xffffffffu, inclusive, offset);
    if (lane >= offset) inclusive += other;
  }
  if (lane == 31) scratch[threadIdx.x / 32] = inclusive;
  __syncthreads();
  T warp_prefix = 0;
  total = 0;
  for (int w = 0; w < kWarps; ++w) {
    if (w < static_cast<int>(threadIdx.x / 32)) warp_prefix += scratch[w];
    total += scratch[w];
  }
  __syncthreads();
  return warp_prefix + inclusive - value;
}

}  // namespace dbsp::cuda::detail
