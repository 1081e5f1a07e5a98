// Fine (M x 1) top-p selection, one CTA per query block: softmax over all of the row's key
// scores, then the cut probability theta by a three-pass radix select over the float bits
// (12 + 12 + 7 bits) whose histograms hold masses in 2^-31 fixed point (integer sums, so the
// result does not depend on thread order). Keys above theta are kept, keys equal to theta in
// ascending order while the mass before them is below tau, plus every key of the diagonal and
// sink blocks; the kept keys are written ascending, in place over the row's scores.
#include <cstdint>

#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/mask_estimate/block_reduce.cuh"
#include "kernels/cuda/mask_estimate/kernels.hpp"

namespace dbsp::cuda::detail {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxBins = 4096;
constexpr double kFixedOne = 2147483648.0;  // 2^31

__device__ __forceinline__ unsigned long long fixed_mass(float p) {
  return static_cast<unsigned long long>(__float2uint_rn(p * static_cast<float>(kFixedOne)));
}

__global__ void __launch_bounds__(kThreads)
    fine_top_p_kernel(const FineTopPConfig config, float* rows, int32_t* key_count,
                      int64_t* key_row_offset) {
  __shared__ unsigned long long histogram[kMaxBins];
  __shared__ float float_scratch[kWarps];
  __shared__ unsigned long long mass_scratch[kWarps];
  __shared__ int int_scratch[kWarps];
  __shared__ uint32_t chosen_bin;
  __shared__ unsigned long long chosen_above;
  const int row = blockIdx.x;
  const int q_block = row % config.q_blocks;
  const int n = config.seq_k;
  float* s = rows + int64_t{row} * n;

  float m = -INFINITY;
  for (int j = threadIdx.x; j < n; j += kThreads) m = fmaxf(m, s[j]);
  m = cta_reduce<kWarps>(
      m, [](float a, float b) { return fmaxf(a, b); }, float_scratch);
  float sum = 0.f;
  for (int j = threadIdx.x; j < n; j += kThreads) sum += expf(s[j] - m);
  sum = cta_reduce<kWarps>(
      sum, [](float a, float b) { return a + b; }, float_scratch);
  const float inverse = 1.f / sum;
  auto probability = [&](int j) { return expf(s[j] - m) * inverse; };

  // Radix select of theta: the largest bit pattern whose tail mass reaches the goal.
  uint32_t prefix = 0, prefix_mask = 0;
  unsigned long long above = 0, goal = 0;
  bool keep_all = config.tau >= 1.f, keep_none = false;
#pragma unroll 1
  for (int pass = 0; pass < 3 && !keep_all; ++pass) {
    const int shift = pass == 0 ? 19 : (pass == 1 ? 7 : 0);  // digits: bits 30-19, 18-7, 6-0
    const int bins = pass < 2 ? 4096 : 128;
    for (int b = threadIdx.x; b < bins; b += kThreads) histogram[b] = 0;
    __syncthreads();
    for (int j = threadIdx.x; j < n; j += kThreads) {
      const float p = probability(j);
      const uint32_t bits = __float_as_uint(p);
      if ((bits & prefix_mask) == prefix)
        atomicAdd(&histogram[(bits >> shift) & (bins - 1)], fixed_mass(p));
    }
    __syncthreads();
    // Thread t owns bins [bins - (t+1)*per, bins - t*per): thread order = descending bins.
    const int per = (bins + kThreads - 1) / kThreads;
    unsigned long long own = 0;
    for (int i = 0; i < per; ++i) {
      const int b = bins - 1 - (threadIdx.x * per + i);
      if (b >= 0) own += histogram[b];
    }
    unsigned long long total;
    const unsigned long long before = cta_exclusive_scan<kWarps>(own, mass_scratch, total);
    if (pass == 0) {
      goal = static_cast<unsigned long long>(static_cast<double>(config.tau) * total);
      if (goal == 0) {  // tau ~ 0: nothing by mass (only the diagonal and sink blocks)
        keep_none = true;
        break;
      }
    }
    if (threadIdx.x == 0) chosen_bin = 0xffffffffu;
    __syncthreads();
    if (above + before < goal && goal <= above + before + own) {
      unsigned long long acc = above + before;
      for (int i = 0; i < per; ++i) {
        const int b = bins - 1 - (threadIdx.x * per + i);
        if (b < 0) break;
        if (acc + histogram[b] >= goal) {
          chosen_bin = static_cast<uint32_t>(b);
          chosen_above = acc;
          break;
        }
        acc += histogram[b];
      }
    }
    __syncthreads();
    if (chosen_bin == 0xffffffffu) {
      keep_all = true;  // rounding left the candidates' mass below the goal: keep them all
    } else {
      prefix |= chosen_bin << shift;
      prefix_mask |= static_cast<uint32_t>(bins - 1) << shift;
      above = chosen_above;
    }
    __syncthreads();
  }
  const uint32_t theta = keep_all ? 0u : prefix;
  const unsigned long long theta_mass = fixed_mass(__uint_as_float(theta));

  const int64_t q_first = int64_t{q_block} * config.block_q;
  const int64_t q_last =
      (q_first + config.block_q < config.seq_q ? q_first + config.block_q : config.seq_q) - 1;
  const int diagonal_first = static_cast<int>(q_first / config.block_k);
  const int diagonal_last = static_cast<int>(q_last / config.block_k);
  int32_t* keys = reinterpret_cast<int32_t*>(s);
  int written = 0, equal_before = 0;
#pragma unroll 1
  for (int base = 0; base < n; base += kThreads) {
    const int j = base + threadIdx.x;
    bool keep = false, equal = false;
    if (j < n) {
      const float p = probability(j);
      const uint32_t bits = __float_as_uint(p);
      keep = keep_all ? p > 0.f : (!keep_none && bits > theta);
      equal = !keep_all && !keep_none && bits == theta;
    }
    int equal_total;
    const int rank = cta_exclusive_scan<kWarps>(static_cast<int>(equal), int_scratch, equal_total);
    if (equal)
      keep = above + static_cast<unsigned long long>(equal_before + rank) * theta_mass < goal;
    equal_before += equal_total;
    if (j < n) {
      const int block = j / config.block_k;
      if (config.keep_diagonal && block >= diagonal_first && block <= diagonal_last) keep = true;
#pragma unroll
      for (int i = 0; i < 8; ++i) keep |= i < config.sink_count && config.sinks[i] == block;
    }
    int keep_total;
    const int position =
        cta_exclusive_scan<kWarps>(static_cast<int>(keep), int_scratch, keep_total);
    // Every thread read its score above (the scans synchronised); positions never pass j.
    if (keep) keys[written + position] = j;
    written += keep_total;
  }
  if (threadIdx.x == 0) {
    key_count[row] = written;
    key_row_offset[row] = int64_t{row} * n;
  }
}

}  // namespace

void launch_fine_top_p_rows(const FineTopPConfig& config, float* rows, int32_t* key_count,
                            int64_t* key_row_offset, cudaStream_t stream) {
  fine_top_p_kernel<<<config.heads * config.q_blocks, kThreads, 0, stream>>>(
      config, rows, key_count, key_row_offset);
  DBSP_CUDA_CHECK_LAUNCH();
}

}  // namespace dbsp::cuda::detail
