// Tile arithmetic of online-softmax attention. Loops are written so that the compiler vectorizes
// them without -ffast-math; on x86-64 each entry point also gets an AVX2/FMA clone chosen at load
// time, since the default build targets baseline x86-64 (SSE2) only.
#include "kernels/cpu/tile_math.hpp"

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DBSP_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define DBSP_CPU_CLONES
#endif

namespace dbsp::cpu {
namespace {

// exp for float softmax weights: Cody-Waite range reduction and a degree-7 Taylor polynomial
// (a few ulp), branch-free so the loop around it vectorizes; glibc's expf does not. Inputs below
// -87 (weights under 1e-38 relative to the row max) give 0; NaN stays NaN.
inline float fast_exp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2High = 0.693359375f;  // ln 2 split so that n * kLn2High is exact
  constexpr float kLn2Low = -2.12194440e-4f;
  constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  constexpr float kLowest = -87.0f;
  constexpr float kHighest = 88.0f;
  float clamped = x < kLowest ? kLowest : x;
  clamped = clamped > kHighest ? kHighest : clamped;
  const float n = (clamped * kLog2e + kRoundMagic) - kRoundMagic;
  const float f = (clamped - n * kLn2High) - n * kLn2Low;
  float p = 1.0f / 5040.0f;
  p = p * f + 1.0f / 720.0f;
  p = p * f + 1.0f / 120.0f;
  p = p * f + 1.0f / 24.0f;
  p = p * f + 1.0f / 6.0f;
  p = p * f + 0.5f;
  p = p * f + 1.0f;
  p = p * f + 1.0f;
  const auto exponent = static_cast<int32_t>(n);
  const float two_to_n = std::bit_cast<float>(static_cast<int32_t>((exponent + 127) << 23));
  float y = p * two_to_n;
  y = x < kLowest ? 0.0f : y;
  return x != x ? x : y;
}

inline double softmax_exp(double x) { return std::exp(x); }
inline float softmax_exp(float x) { return fast_exp(x); }

template <class T>
inline void scores_impl(const T* __restrict q, const T* __restrict keys_t, T* __restrict scores,
                        int rows, int keys, int head_dim, T scale) {
  for (int i = 0; i < rows; ++i) {
    T* __restrict row = scores + static_cast<int64_t>(i) * kTileKeys;
    const T* __restrict q_row = q + static_cast<int64_t>(i) * head_dim;
    for (int j = 0; j < keys; ++j) row[j] = T(0);
    for (int c = 0; c < head_dim; ++c) {
      const T qc = q_row[c];
      const T* __restrict k_row = keys_t + static_cast<int64_t>(c) * kTileKeys;
      for (int j = 0; j < keys; ++j) row[j] += qc * k_row[j];
    }
    for (int j = 0; j < keys; ++j) row[j] *= scale;
  }
}

template <class T>
inline void softmax_impl(T* __restrict scores, T* __restrict row_max, T* __restrict row_sum,
                         T* __restrict acc, int rows, int keys, int head_dim) {
  constexpr T kMinusInf = -std::numeric_limits<T>::infinity();
  for (int i = 0; i < rows; ++i) {
    T* __restrict row = scores + static_cast<int64_t>(i) * kTileKeys;
    T tile_max = kMinusInf;
#pragma omp simd reduction(max : tile_max)
    for (int j = 0; j < keys; ++j) tile_max = row[j] > tile_max ? row[j] : tile_max;
    const T old_max = row_max[i];
    const T new_max = tile_max > old_max ? tile_max : old_max;
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < keys; ++j) {
      row[j] = softmax_exp(row[j] - new_max);
      sum += row[j];
    }
    // The first tile of a row has nothing to rescale (and exp(-inf - -inf) would be NaN).
    if (old_max != kMinusInf && new_max != old_max) {
      const T correction = softmax_exp(old_max - new_max);
      row_sum[i] *= correction;
      T* __restrict acc_row = acc + static_cast<int64_t>(i) * head_dim;
      for (int c = 0; c < head_dim; ++c) acc_row[c] *= correction;
    }
    row_sum[i] += sum;
    row_max[i] = new_max;
  }
}

template <class T>
inline void accumulate_impl(const T* __restrict probs, const T* __restrict values,
                            T* __restrict acc, int rows, int keys, int head_dim) {
  for (int i = 0; i < rows; ++i) {
    const T* __restrict p_row = probs + static_cast<int64_t>(i) * kTileKeys;
    T* __restrict acc_row = acc + static_cast<int64_t>(i) * head_dim;
    for (int j = 0; j < keys; ++j) {
      const T p = p_row[j];
      const T* __restrict v_row = values + static_cast<int64_t>(j) * head_dim;
      for (int c = 0; c < head_dim; ++c) acc_row[c] += p * v_row[c];
    }
  }
}

}  // namespace

DBSP_CPU_CLONES void tile_scores(const float* q, const float* keys_t, float* scores, int rows,
                                 int keys, int head_dim, float scale) {
  scores_impl(q, keys_t, scores, rows, keys, head_dim, scale);
}
DBSP_CPU_CLONES void tile_scores(const double* q, const double* keys_t, double* scores, int rows,
                                 int keys, int head_dim, double scale) {
  scores_impl(q, keys_t, scores, rows, keys, head_dim, scale);
}

DBSP_CPU_CLONES void tile_softmax(float* scores, float* row_max, float* row_sum, float* acc,
                                  int rows, int keys, int head_dim) {
  softmax_impl(scores, row_max, row_sum, acc, rows, keys, head_dim);
}
DBSP_CPU_CLONES void tile_softmax(double* scores, double* row_max, double* row_sum, double* acc,
                                  int rows, int keys, int head_dim) {
  softmax_impl(scores, row_max, row_sum, acc, rows, keys, head_dim);
}

DBSP_CPU_CLONES void tile_accumulate(const float* probs, const float* values, float* acc, int rows,
                                     int keys, int head_dim) {
  accumulate_impl(probs, values, acc, rows, keys, head_dim);
}
DBSP_CPU_CLONES void tile_accumulate(const double* probs, const double* values, double* acc,
                                     int rows, int keys, int head_dim) {
  accumulate_impl(probs, values, acc, rows, keys, head_dim);
}

}  // namespace dbsp::cpu
