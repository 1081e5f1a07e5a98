// Per query block top-p selection for mask estimation: one CTA per row softmaxes the pooled
// scores, sorts (probability desc, key block asc) with a bitonic sort in shared memory, keeps the
// sorted prefix whose preceding mass is below tau, adds the diagonal and sink blocks, and writes
// the kept blocks ascending. Fixed reduction and scan orders make the result deterministic.
#include <cstdint>

#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/mask_estimate/kernels.hpp"

namespace dbsp::cuda::detail {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

template <class T, class Op>
__device__ T block_reduce(T value, Op op, T* scratch) {
  for (int offset = 16; offset > 0; offset /= 2)
    value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = value;
  __syncthreads();
  T total = scratch[0];
  for (int w = 1; w < kWarps; ++w) total = op(total, scratch[w]);
  __syncthreads();
  return total;
}

// Exclusive prefix of `value` over threads in thread order; `total` gets the sum of all.
template <class T>
__device__ T block_exclusive_scan(T value, T* scratch, T& total) {
  const int lane = threadIdx.x % 32;
  T inclusive = value;
  for (int offset = 1; offset < 32; offset *= 2) {
    const T other = __shfl_up_sync(0xffffffffu, inclusive, offset);
    if (lane >= offset) inclusive += other;
  }
  if (lane == 31) scratch[threadIdx.x / 32] = inclusive;
  __syncthreads();
  T warp_prefix = 0;
  total = 0;
  for (int w = 0; w < kWarps; ++w) {
    if (w < static_cast<int>(threadIdx.x / 32)) warp_prefix += scratch[w];
    total += scratch[w];
  }
  __syncthreads();
  return warp_prefix + inclusive - value;
}

__device__ __forceinline__ float key_probability(uint64_t key) {
  return __uint_as_float(static_cast<uint32_t>(key >> 32));
}
__device__ __forceinline__ uint32_t key_block(uint64_t key) {
  return 0xffffffffu - static_cast<uint32_t>(key);
}

__global__ void __launch_bounds__(kThreads)
    top_p_kernel(const TopPConfig config, const float* scores, int32_t* kv_count,
                 int64_t* block_row_offset, int32_t* kv_index, int sort_size) {
  extern __shared__ uint64_t keys[];
  uint8_t* kept = reinterpret_cast<uint8_t*>(keys + sort_size);
  __shared__ float float_scratch[kWarps];
  __shared__ int int_scratch[kWarps];
  const int row = blockIdx.x;
  const int q_block = row % config.q_blocks;
  const int n = config.k_blocks;
  const float* s = scores + int64_t{row} * n;

  float m = -INFINITY;
  for (int j = threadIdx.x; j < n; j += kThreads) m = fmaxf(m, s[j]);
  m = block_reduce(
      m, [](float a, float b) { return fmaxf(a, b); }, float_scratch);
  float sum = 0.f;
  for (int j = threadIdx.x; j < n; j += kThreads) sum += expf(s[j] - m);
  sum = block_reduce(
      sum, [](float a, float b) { return a + b; }, float_scratch);
  for (int j = threadIdx.x; j < sort_size; j += kThreads) {
    uint64_t key = 0;  // padding sorts last and names no block
    if (j < n) {
      const float p = expf(s[j] - m) / sum;
      key = (static_cast<uint64_t>(__float_as_uint(p)) << 32) | (0xffffffffu - j);
      kept[j] = 0;
    }
    keys[j] = key;
  }
  __syncthreads();

  // Bitonic sort, descending: higher probability first, then lower block index.
  for (int k = 2; k <= sort_size; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = threadIdx.x; i < sort_size; i += kThreads) {
        const int partner = i ^ j;
        if (partner > i) {
          const uint64_t a = keys[i], b = keys[partner];
          const bool descending = (i & k) == 0;
          if (descending ? a < b : a > b) {
            keys[i] = b;
            keys[partner] = a;
          }
        }
      }
      __syncthreads();
    }
  }

  // Keep sorted element e while the mass before it is below tau.
  const int per_thread = (sort_size + kThreads - 1) / kThreads;
  const int first = threadIdx.x * per_thread;
  float local = 0.f;
  for (int e = first; e < first + per_thread && e < sort_size; ++e)
    local += key_probability(keys[e]);
  float total_mass;
  float before = block_exclusive_scan(local, float_scratch, total_mass);
  for (int e = first; e < first + per_thread && e < sort_size; ++e) {
    const uint32_t block = key_block(keys[e]);
    if (before < config.tau && block < static_cast<uint32_t>(n)) kept[block] = 1;
    before += key_probability(keys[e]);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    if (config.keep_diagonal) {
      const int64_t q_first = int64_t{q_block} * config.block_q;
      const int64_t first_block = q_first / config.block_k;
      int64_t last_block = (q_first + config.block_q - 1) / config.block_k;
      if (last_block > n - 1) last_block = n - 1;
      for (int64_t b = first_block; b <= last_block; ++b) kept[b] = 1;
    }
    for (int i = 0; i < config.sink_count; ++i)
      if (config.sinks[i] >= 0 && config.sinks[i] < n) kept[config.sinks[i]] = 1;
  }
  __syncthreads();

  // Compaction, ascending block index.
  const int per_thread_blocks = (n + kThreads - 1) / kThreads;
  const int block_first = threadIdx.x * per_thread_blocks;
  int count = 0;
  for (int j = block_first; j < block_first + per_thread_blocks && j < n; ++j) count += kept[j];
  int total_kept;
  int position = block_exclusive_scan(count, int_scratch, total_kept);
  int32_t* out = kv_index + int64_t{row} * n;
  for (int j = block_first; j < block_first + per_thread_blocks && j < n; ++j)
    if (kept[j]) out[position++] = j;
  if (threadIdx.x == 0) {
    kv_count[row] = total_kept;
    block_row_offset[row] = int64_t{row} * n;
  }
}

}  // namespace

void launch_top_p_rows(const TopPConfig& config, const float* scores, int32_t* kv_count,
                       int64_t* block_row_offset, int32_t* kv_index, cudaStream_t stream) {
  require(config.k_blocks >= 1 && config.k_blocks <= kMaxTopPKeyBlocks,
          "mask estimation handles 1 to ", kMaxTopPKeyBlocks, " key blocks, got ", config.k_blocks);
  int sort_size = 1;
  while (sort_size < config.k_blocks) sort_size <<= 1;
  const size_t smem = sort_size * sizeof(uint64_t) + sort_size;
  DBSP_CUDA_CHECK(cudaFuncSetAttribute(top_p_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)));
  top_p_kernel<<<config.heads * config.q_blocks, kThreads, smem, stream>>>(
      config, scores, kv_count, block_row_offset, kv_index, sort_size);
  DBSP_CUDA_CHECK_LAUNCH();
}

}  // namespace dbsp::cuda::detail
