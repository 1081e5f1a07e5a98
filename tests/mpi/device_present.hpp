// Whether this machine has a CUDA device: the device tests of the MPI suites skip themselves
// without one.
#pragma once

#include <cuda_runtime.h>

namespace dbsp::test {

inline bool has_gpu() {
  int devices = 0;
  return cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0;
}

}  // namespace dbsp::test
