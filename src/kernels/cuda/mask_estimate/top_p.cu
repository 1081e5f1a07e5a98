// Per query block top-p selection for mask estimation, one warp per row. The row's pooled scores
// are softmaxed into shared memory; the cut is the largest probability theta whose tail mass
// (sum of p >= theta) reaches tau, found by bisection over the float bit patterns with masses
// summed in 2^-40 fixed point (integer sums: deterministic in any order). Blocks above theta are
// kept, blocks equal to theta in ascending index while the mass before them is below tau: the
// same set as sorting (p desc, index asc) and keeping while the preceding mass is below tau.
// Diagonal and sink blocks are added, and the kept blocks written ascending.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/mask_estimate/kernels.hpp"

namespace dbsp::cuda::detail {
namespace {

constexpr double kFixedOne = 1099511627776.0;  // 2^40

__device__ __forceinline__ float warp_max(float x) {
  for (int offset = 16; offset > 0; offset /= 2)
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
  for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}
__device__ __forceinline__ unsigned long long warp_sum(unsigned long long x) {
  for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

__device__ __forceinline__ unsigned long long fixed_mass(float p) {
  return __float2ull_rn(p * static_cast<float>(kFixedOne));
}

// Fixed-point mass of the blocks whose probability bits are >= theta.
__device__ __forceinline__ unsigned long long tail_mass(const float* p, int n, uint32_t theta,
                                                        int lane) {
  unsigned long long sum = 0;
  for (int j = lane; j < n; j += 32) {
    const float x = p[j];
    if (__float_as_uint(x) >= theta) sum += fixed_mass(x);
  }
  return warp_sum(sum);
}

__global__ void top_p_kernel(const TopPConfig config, const float* scores, int32_t* kv_count,
                             int64_t* block_row_offset, int32_t* kv_index,
                             unsigned long long tau_fixed) {
  extern __shared__ float probabilities[];  // [warps][k_blocks]
  const int warps = blockDim.x / 32;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int row = blockIdx.x * warps + warp;
  if (row >= config.heads * config.q_blocks) return;
  const int q_block = config.first_q_block + row % config.q_blocks;  // global, for the diagonal
  const int n = config.k_blocks;
  const float* s = scores + int64_t{row} * n;
  float* p = probabilities + warp * n;

  float m = -INFINITY;
  for (int j = lane; j < n; j += 32) m = fmaxf(m, s[j]);
  m = warp_max(m);
  float sum = 0.f;
  for (int j = lane; j < n; j += 32) {
    const float e = expf(s[j] - m);
    p[j] = e;
    sum += e;
  }
  sum = warp_sum(sum);
  const float inverse = 1.f / sum;
  for (int j = lane; j < n; j += 32) p[j] *= inverse;
  __syncwarp();

  // Largest theta with tail_mass(theta) >= tau; none (keep nothing by mass) when tau <= 0.
  uint32_t theta = 0x7f800001u;  // above every finite probability
  if (tau_fixed > 0) {
    uint32_t low = 0, high = 0x7f800001u;
    if (tail_mass(p, n, 0, lane) >= tau_fixed) {
      while (high - low > 1) {
        const uint32_t middle = low + (high - low) / 2;
        if (tail_mass(p, n, middle, lane) >= tau_fixed)
          low = middle;
        else
          high = middle;
      }
    }
    theta = low;  // total mass below tau (rounding): theta 0 keeps every block
  }
  const unsigned long long above = theta == 0x7f800001u ? 0 : tail_mass(p, n, theta + 1, lane);
  const unsigned long long theta_mass = fixed_mass(__uint_as_float(theta));

  const int64_t q_first = int64_t{q_block} * config.block_q;
  const int64_t diagonal_first = q_first / config.block_k;
  const int64_t diagonal_last = (q_first + config.block_q - 1) / config.block_k;
  int32_t* out = kv_index + int64_t{row} * n;
  int equal_before = 0;
  int written = 0;
  for (int base = 0; base < n; base += 32) {
    const int j = base + lane;
    bool keep = false;
    bool equal = false;
    if (j < n) {
      const uint32_t bits = __float_as_uint(p[j]);
      keep = bits > theta;
      equal = bits == theta;
    }
    const unsigned equal_ballot = __ballot_sync(0xffffffffu, equal);
    if (equal) {
      const int rank = equal_before + __popc(equal_ballot & ((1u << lane) - 1));
      keep = above + static_cast<unsigned long long>(rank) * theta_mass < tau_fixed;
    }
    equal_before += __popc(equal_ballot);
    if (j < n) {
      if (config.keep_diagonal && j >= diagonal_first && j <= diagonal_last) keep = true;
#pragma unroll
      for (int i = 0; i < 8; ++i) keep |= i < config.sink_count && config.sinks[i] == j;
    }
    const unsigned keep_ballot = __ballot_sync(0xffffffffu, keep);
    if (keep) out[written + __popc(keep_ballot & ((1u << lane) - 1))] = j;
    written += __popc(keep_ballot);
  }
  if (lane == 0) {
    kv_count[row] = written;
    block_row_offset[row] = int64_t{row} * n;
  }
}

}  // namespace

void launch_top_p_rows(const TopPConfig& config, const float* scores, int32_t* kv_count,
                       int64_t* block_row_offset, int32_t* kv_index, cudaStream_t stream) {
  require(config.k_blocks >= 1 && config.k_blocks <= kMaxTopPKeyBlocks,
          "mask estimation handles 1 to ", kMaxTopPKeyBlocks, " key blocks, got ", config.k_blocks);
  // Up to 8 warps (rows) per CTA within 96 KB of shared memory.
  const size_t row_bytes = sizeof(float) * config.k_blocks;
  const int warps =
      static_cast<int>(std::max<size_t>(1, std::min<size_t>(8, (96u << 10) / row_bytes)));
  const size_t smem = warps * row_bytes;
  DBSP_CUDA_CHECK(cudaFuncSetAttribute(top_p_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)));
  const int rows = config.heads * config.q_blocks;
  const double tau = config.tau < 0 ? 0.0 : config.tau;
  const auto tau_fixed = static_cast<unsigned long long>(tau * kFixedOne);
  top_p_kernel<<<(rows + warps - 1) / warps, 32 * warps, smem, stream>>>(
      config, scores, kv_count, block_row_offset, kv_index, tau_fixed);
  DBSP_CUDA_CHECK_LAUNCH();
}

}  // namespace dbsp::cuda::detail
