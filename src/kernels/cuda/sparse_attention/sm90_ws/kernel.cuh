// Entry of the warp-specialised wgmma attention kernel (see traits.cuh for the roles): barrier
// set-up, then the producer warpgroup gives registers back (setmaxnreg) and its warps feed the
// pipelines (warp i: items, Q, K, of paired rows in paired mode; warp i + 2: V), while the consumer
// warpgroups take the registers and compute.
#pragma once

#include "kernels/cuda/common/async_copy.cuh"
#include "kernels/cuda/common/ptx.cuh"
#include "kernels/cuda/sparse_attention/sm90_ws/consumer.cuh"
#include "kernels/cuda/sparse_attention/sm90_ws/pipeline.cuh"
#include "kernels/cuda/sparse_attention/sm90_ws/producer.cuh"
#include "kernels/cuda/sparse_attention/sm90_ws/tensor_maps.hpp"

namespace dbsp::cuda::detail {

template <class Traits>
__global__ void __launch_bounds__(Traits::kThreads, 1)
    sparse_attention_ws_kernel(const SparseAttentionParams p, float scale,
                               const __grid_constant__ TmaMaps maps) {
  // No static shared memory: the dynamic buffer starts at the CTA's shared window, aligned for
  // the 1024-byte swizzle atoms the TMA writes (checked).
  extern __shared__ __align__(1024) char smem[];
  if ((shared_address(smem) & 1023) != 0) __trap();
  const int warp = threadIdx.x / 32;
  if (threadIdx.x < Traits::kPipelines) {
    Pipeline<Traits>::at(smem, threadIdx.x).init();
    mbarrier_init_fence();
  }
  if (threadIdx.x == 32) {
    tma_prefetch_descriptor(&maps.q);
    tma_prefetch_descriptor(&maps.k);
    tma_prefetch_descriptor(&maps.v);
  }
  __syncthreads();
  if (warp < 4) {
    release_registers<Traits::kProducerRegisters>();
    const int lane = threadIdx.x % 32;
    if (warp < Traits::kPipelines) {
      if constexpr (Traits::kPaired)
        WsProducer<Traits>::run_paired(p, maps, Pipeline<Traits>::at(smem, warp), lane);
      else
        WsProducer<Traits>::run(p, maps, Pipeline<Traits>::at(smem, warp), lane);
    } else if (warp >= 2 && warp < 2 + Traits::kPipelines)
      WsProducer<Traits>::run_v(p, maps, Pipeline<Traits>::at(smem, warp - 2), lane);
  } else {
    claim_registers<Traits::kConsumerRegisters>();
    const int consumer = warp / 4 - 1;
    WsConsumer<Traits>::run(p, Pipeline<Traits>::at(smem, consumer / Traits::kConsumersPerPipeline),
                            consumer % Traits::kConsumersPerPipeline, scale);
  }
}

}  // namespace dbsp::cuda::detail
