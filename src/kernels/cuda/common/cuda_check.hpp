// One checking macro for every CUDA runtime call: a failure throws dbsp::Error naming the call,
// the file and the line (the library never exits).
#pragma once

#include <cuda_runtime.h>

#include "dbsp/error.hpp"

#define DBSP_CUDA_CHECK(call)                                                                      \
  do {                                                                                             \
    const cudaError_t dbsp_cuda_status = (call);                                                   \
    if (dbsp_cuda_status != cudaSuccess)                                                           \
      ::dbsp::fail(#call, " failed at ", __FILE__, ":", __LINE__, ": ",                            \
                   cudaGetErrorName(dbsp_cuda_status), " (", cudaGetErrorString(dbsp_cuda_status), \
                   ")");                                                                           \
  } while (0)

// After a kernel launch: reports launch-configuration errors without synchronising.
#define DBSP_CUDA_CHECK_LAUNCH() DBSP_CUDA_CHECK(cudaGetLastError())
