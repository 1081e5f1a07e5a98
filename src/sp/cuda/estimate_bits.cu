// flag_non_finite and block_lists_to_bits (estimate_bits.hpp): one pass each, a few kilobytes per
// rank, so plain grid-stride loops; the bits of a row are OR-ed in shared memory and each word is
// stored once.
#include <algorithm>

#include "dbsp/error.hpp"
#include "sp/cuda/estimate_bits.hpp"

namespace dbsp::sp::device {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxWords = 128;  // 8192 key blocks (kMaxTopPKeyBlocks of the top-p kernel)

void check_launch(const char* what) {
  const cudaError_t status = cudaGetLastError();
  require(status == cudaSuccess, what, ": launch failed: ", cudaGetErrorString(status));
}

__global__ void flag_non_finite_kernel(const float* values, int64_t count, uint64_t flag_bit,
                                       uint64_t* flag) {
  bool bad = false;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    // NaN and infinities: the exponent bits all set.
    bad |= (__float_as_uint(values[i]) & 0x7f800000u) == 0x7f800000u;
  }
  // One atomic per warp that saw a bad value.
  if (__any_sync(0xffffffffu, bad) && threadIdx.x % 32 == 0) {
    atomicOr(reinterpret_cast<unsigned long long*>(flag),
             static_cast<unsigned long long>(flag_bit));
  }
}

// One CTA per row.
__global__ void block_lists_to_bits_kernel(const int32_t* kv_count, const int32_t* kv_index,
                                           int k_blocks, int words, uint64_t* bits) {
  __shared__ unsigned long long row_bits[kMaxWords];
  const int64_t row = blockIdx.x;
  for (int w = threadIdx.x; w < words; w += blockDim.x) row_bits[w] = 0;
  __syncthreads();
  const int32_t* kept = kv_index + row * k_blocks;
  const int count = kv_count[row];
  for (int i = threadIdx.x; i < count; i += blockDim.x) {
    const int block = kept[i];
    atomicOr(&row_bits[block / 64], 1ull << (block % 64));
  }
  __syncthreads();
  for (int w = threadIdx.x; w < words; w += blockDim.x) bits[row * words + w] = row_bits[w];
}

}  // namespace

void flag_non_finite(const float* values, int64_t count, uint64_t flag_bit, uint64_t* flag,
                     cudaStream_t stream) {
  if (count <= 0) return;
  const int64_t blocks = std::min<int64_t>(1024, (count + kThreads - 1) / kThreads);
  flag_non_finite_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(values, count,
                                                                                 flag_bit, flag);
  check_launch("flag_non_finite");
}

void block_lists_to_bits(const int32_t* kv_count, const int32_t* kv_index, int64_t rows,
                         int k_blocks, int words, uint64_t* bits, cudaStream_t stream) {
  require(words >= (k_blocks + 63) / 64 && words <= kMaxWords, "block_lists_to_bits: ", words,
          " words per row for ", k_blocks, " key blocks (at most ", kMaxWords, ")");
  if (rows <= 0) return;
  block_lists_to_bits_kernel<<<static_cast<unsigned>(rows), 128, 0, stream>>>(
      kv_count, kv_index, k_blocks, words, bits);
  check_launch("block_lists_to_bits");
}

}  // namespace dbsp::sp::device
