// fill_block_indices: one warp per mask row; each lane takes one 64-bit word, a warp scan of the
// words' popcounts gives every lane its output position.
#include "dbsp/error.hpp"
#include "sp/cuda/block_indices.hpp"

namespace dbsp::sp::device {
namespace {

constexpr int kWarpsPerBlock = 8;

__global__ void fill_block_indices_kernel(const uint64_t* row_bits, int words, int64_t rows,
                                          const uint64_t* wanted, const int32_t* wanted_before,
                                          const int64_t* row_offset, int32_t* kv_index) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  const uint64_t* bits = row_bits + row * words;
  int64_t base = row_offset[row];
  for (int first = 0; first < words; first += 32) {
    const int w = first + lane;
    const uint64_t wanted_word = w < words ? wanted[w] : 0;
    uint64_t kept = w < words ? bits[w] & wanted_word : 0;
    const int count = __popcll(kept);
    int inclusive = count;
    for (int delta = 1; delta < 32; delta *= 2) {
      const int below = __shfl_up_sync(0xffffffffu, inclusive, delta);
      if (lane >= delta) inclusive += below;
    }
    int64_t at = base + inclusive - count;
    const int before = w < words ? wanted_before[w] : 0;
    for (; kept != 0; kept &= kept - 1) {
      const int bit = __ffsll(static_cast<long long>(kept)) - 1;
      kv_index[at++] = before + __popcll(wanted_word & ((uint64_t{1} << bit) - 1));
    }
    base += __shfl_sync(0xffffffffu, inclusive, 31);
  }
}

}  // namespace

void fill_block_indices(const uint64_t* row_bits, int words, int64_t rows, const uint64_t* wanted,
                        const int32_t* wanted_before, const int64_t* row_offset, int32_t* kv_index,
                        cudaStream_t stream) {
  if (rows <= 0 || words <= 0) return;
  const int64_t blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  fill_block_indices_kernel<<<static_cast<unsigned>(blocks), kWarpsPerBlock * 32, 0, stream>>>(
      row_bits, words, rows, wanted, wanted_before, row_offset, kv_index);
  const cudaError_t status = cudaGetLastError();
  require(status == cudaSuccess, "fill_block_indices: launch failed: ", cudaGetErrorString(status));
}

}  // namespace dbsp::sp::device
