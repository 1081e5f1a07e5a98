// Device-side data movement of the runtime: strided row copies driven by a descriptor table (slab
// packing and unpacking), fills, and the fp32 -> bf16 conversion of the ring accumulator.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace dbsp::sp::device {

// The buffers a copy table refers to, by index: tables hold offsets, not addresses, so a table
// built for one layer stays valid when buffers move (grown workspace, other user tensors).
constexpr int kMaxCopyBases = 16;
struct CopyBases {
  uint64_t address[kMaxCopyBases] = {};
};

// Copies `rows` rows of row_bytes bytes from base[src_base] + src_offset (rows src_stride bytes
// apart) to base[dst_base] + dst_offset (rows dst_stride bytes apart).
struct RowCopy {
  int64_t src_offset = 0;
  int64_t dst_offset = 0;
  int64_t src_stride = 0;
  int64_t dst_stride = 0;
  int64_t rows = 0;
  int32_t src_base = 0;
  int32_t dst_base = 0;
};

// Runs `count` copies from a device table; row_bytes must be a multiple of 16 and every address
// and stride 16-byte aligned.
void copy_rows(const RowCopy* table, int64_t count, const CopyBases& bases, int64_t row_bytes,
               int64_t max_rows, cudaStream_t stream);
void fill_f32(float* data, int64_t count, float value, cudaStream_t stream);
// bf16 (as raw 16-bit words) from fp32, round to nearest even.
void f32_to_bf16(const float* in, uint16_t* out, int64_t count, cudaStream_t stream);

}  // namespace dbsp::sp::device
