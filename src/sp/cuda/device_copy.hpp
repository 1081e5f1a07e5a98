// Device-side data movement of the runtime: strided row copies driven by a descriptor table (slab
// packing and unpacking), fills, and the fp32 -> bf16 conversion of the ring accumulator.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "sp/row_copy.hpp"

namespace dbsp::sp::device {

// Runs `count` copies from a device table; row_bytes must be a multiple of 16 and every address
// and stride 16-byte aligned.
void copy_rows(const RowCopy* table, int64_t count, const CopyBases& bases, int64_t row_bytes,
               int64_t max_rows, cudaStream_t stream);
void fill_f32(float* data, int64_t count, float value, cudaStream_t stream);
// bf16 (as raw 16-bit words) from fp32, round to nearest even.
void f32_to_bf16(const float* in, uint16_t* out, int64_t count, cudaStream_t stream);

}  // namespace dbsp::sp::device
