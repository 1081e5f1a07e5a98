// Device timing for the benchmark: one warm-up call, then `reps` calls each bracketed by CUDA
// events on the default stream; the median in milliseconds.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "kernels/cuda/common/cuda_check.hpp"

namespace dbsp::bench {

template <class Launch>
double median_ms(int reps, Launch&& launch) {
  launch();
  DBSP_CUDA_CHECK(cudaDeviceSynchronize());
  cudaEvent_t start, stop;
  DBSP_CUDA_CHECK(cudaEventCreate(&start));
  DBSP_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<float> times;
  for (int i = 0; i < std::max(reps, 1); ++i) {
    DBSP_CUDA_CHECK(cudaEventRecord(start));
    launch();
    DBSP_CUDA_CHECK(cudaEventRecord(stop));
    DBSP_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    DBSP_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace dbsp::bench
