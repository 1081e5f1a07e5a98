// Kernels of device_copy.hpp.
#include <cuda_bf16.h>

#include <algorithm>

#include "dbsp/error.hpp"
#include "sp/cuda/device_copy.hpp"

namespace dbsp::sp::device {
namespace {

constexpr int kThreads = 256;

// Rows a thread copies per pass: all their loads are issued before any store, so that each
// thread keeps several 16-byte loads in flight. One load per thread and a few kilobytes per block
// (the first version) left the copy at about 460 GB/s on an H200, a fifth of its memory's rate.
constexpr int kRowsPerThread = 4;

// Block (x, y) copies passes y, y + gridDim.y, ... of table entry x; a pass is kRowsPerThread
// groups of rows, each group as many rows as the block's threads cover at 16 bytes per thread.
__global__ void copy_rows_kernel(const RowCopy* table, CopyBases bases, int64_t row_bytes) {
  const RowCopy copy = table[blockIdx.x];
  const char* source =
      reinterpret_cast<const char*>(bases.address[copy.src_base]) + copy.src_offset;
  char* target = reinterpret_cast<char*>(bases.address[copy.dst_base]) + copy.dst_offset;
  const int64_t vectors = row_bytes / 16;
  if (vectors > kThreads) {  // rows wider than a block: one row at a time, the block across it
    for (int64_t row = blockIdx.y; row < copy.rows; row += gridDim.y) {
      const auto* src = reinterpret_cast<const uint4*>(source + row * copy.src_stride);
      auto* dst = reinterpret_cast<uint4*>(target + row * copy.dst_stride);
      for (int64_t v = threadIdx.x; v < vectors; v += kThreads) dst[v] = src[v];
    }
    return;
  }
  const int64_t rows_per_group = kThreads / vectors;
  const int64_t lane_row = threadIdx.x / vectors;
  const int64_t lane_vector = threadIdx.x % vectors;
  if (lane_row >= rows_per_group) return;
  const int64_t rows_per_pass = rows_per_group * kRowsPerThread;
  for (int64_t first = blockIdx.y * rows_per_pass; first < copy.rows;
       first += int64_t{gridDim.y} * rows_per_pass) {
    uint4 held[kRowsPerThread];
#pragma unroll
    for (int u = 0; u < kRowsPerThread; ++u) {
      const int64_t row = first + u * rows_per_group + lane_row;
      if (row < copy.rows) {
        held[u] = reinterpret_cast<const uint4*>(source + row * copy.src_stride)[lane_vector];
      }
    }
#pragma unroll
    for (int u = 0; u < kRowsPerThread; ++u) {
      const int64_t row = first + u * rows_per_group + lane_row;
      if (row < copy.rows) {
        reinterpret_cast<uint4*>(target + row * copy.dst_stride)[lane_vector] = held[u];
      }
    }
  }
}

__global__ void fill_kernel(float* data, int64_t count, float value) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    data[i] = value;
  }
}

__global__ void to_bf16_kernel(const float* in, __nv_bfloat16* out, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = __float2bfloat16_rn(in[i]);
  }
}

int grid_for(int64_t count) {
  return static_cast<int>(std::clamp<int64_t>((count + kThreads - 1) / kThreads, 1, 65535));
}

void check_launch(const char* what) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess)
    fail("cuda: launching ", what, " failed: ", cudaGetErrorString(status));
}

}  // namespace

void copy_rows(const RowCopy* table, int64_t count, const CopyBases& bases, int64_t row_bytes,
               int64_t max_rows, cudaStream_t stream) {
  if (count == 0 || max_rows == 0) return;
  require(row_bytes > 0 && row_bytes % 16 == 0, "copy_rows: row of ", row_bytes,
          " bytes is not a multiple of 16");
  require(count < (int64_t{1} << 31), "copy_rows: ", count, " copies in one launch");
  const int64_t rows_per_pass =
      row_bytes / 16 > kThreads ? 1 : kThreads / (row_bytes / 16) * kRowsPerThread;
  const int64_t passes = (max_rows + rows_per_pass - 1) / rows_per_pass;
  // Up to 64 blocks per copy, more when there are few copies, so that a short table still
  // fills the GPU (a rank holding one long slab per tensor).
  const int64_t most_blocks = std::clamp<int64_t>(4096 / count, 64, 65535);
  const dim3 grid(static_cast<unsigned>(count),
                  static_cast<unsigned>(std::clamp<int64_t>(passes, 1, most_blocks)));
  copy_rows_kernel<<<grid, kThreads, 0, stream>>>(table, bases, row_bytes);
  check_launch("copy_rows");
}

void fill_f32(float* data, int64_t count, float value, cudaStream_t stream) {
  if (count == 0) return;
  fill_kernel<<<grid_for(count), kThreads, 0, stream>>>(data, count, value);
  check_launch("fill_f32");
}

void f32_to_bf16(const float* in, uint16_t* out, int64_t count, cudaStream_t stream) {
  if (count == 0) return;
  to_bf16_kernel<<<grid_for(count), kThreads, 0, stream>>>(
      in, reinterpret_cast<__nv_bfloat16*>(out), count);
  check_launch("f32_to_bf16");
}

}  // namespace dbsp::sp::device
