// Checking macros for CUDA runtime and NCCL calls: a failure throws dbsp::Error naming the call,
// the library's error text and the source line. ncclInProgress is not a failure (non-blocking
// communicators return it; the caller polls the communicator afterwards).
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include "dbsp/error.hpp"

#define DBSP_CUDA_RT_CHECK(call)                                                            \
  do {                                                                                      \
    const cudaError_t dbsp_cuda_code_ = (call);                                             \
    if (dbsp_cuda_code_ != cudaSuccess) {                                                   \
      ::dbsp::fail("cuda: ", #call, " failed: ", cudaGetErrorString(dbsp_cuda_code_), " (", \
                   __FILE__, ":", __LINE__, ")");                                           \
    }                                                                                       \
  } while (0)

#define DBSP_NCCL_CHECK(call)                                                               \
  do {                                                                                      \
    const ncclResult_t dbsp_nccl_code_ = (call);                                            \
    if (dbsp_nccl_code_ != ncclSuccess && dbsp_nccl_code_ != ncclInProgress) {              \
      ::dbsp::fail("nccl: ", #call, " failed: ", ncclGetErrorString(dbsp_nccl_code_), " (", \
                   ncclGetLastError(nullptr), ") (", __FILE__, ":", __LINE__, ")");         \
    }                                                                                       \
  } while (0)
