// The device's scan of a bf16 output shard for NaN and Inf (sp/non_finite.hpp).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace dbsp::sp::device {

// *first = min(*first, index of each NaN or Inf among data[0, count)) (bf16 as raw 16-bit words);
// the caller sets *first to ~0 beforehand.
void first_non_finite_bf16(const uint16_t* data, int64_t count, unsigned long long* first,
                           cudaStream_t stream);

}  // namespace dbsp::sp::device
