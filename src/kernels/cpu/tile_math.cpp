// Tile arithmetic of online-softmax attention. The two matrix products are register-blocked
// (kRowGroup rows x two vectors of accumulators) with GCC vector types of a width chosen per
// instruction set: on x86-64 an AVX2/FMA build (32-byte vectors) is picked at run time when the
// CPU has it, else the baseline SSE2 build (16-byte vectors), since the default compile flags
// target baseline x86-64 only.
#include "kernels/cpu/tile_math.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DBSP_CPU_AVX2_DISPATCH 1
#endif

namespace dbsp::cpu {
namespace {

template <class T, int kBytes>
using Vec [[gnu::vector_size(kBytes)]] = T;

template <class T, int kBytes>
constexpr int kLanes = static_cast<int>(kBytes / sizeof(T));

// Unaligned vector moves; by reference, so no vector crosses a function boundary by value.
template <class V, class T>
[[gnu::always_inline]] inline void load(V& v, const T* p) {
  std::memcpy(&v, p, sizeof(v));
}

template <class V, class T>
[[gnu::always_inline]] inline void store(T* p, const V& v) {
  std::memcpy(p, &v, sizeof(v));
}

// exp of a vector of float softmax arguments (all <= 0 after the max subtraction): Cody-Waite
// range reduction and a degree-7 Taylor polynomial (a few ulp), branch-free on whole vectors;
// glibc's expf is scalar. Arguments below -87 (weights under 1e-38 of the row max) give 0; NaN
// stays NaN so that bad inputs surface in the output.
template <int kBytes>
[[gnu::always_inline]] inline void exp_in_place(Vec<float, kBytes>& x) {
  using Floats = Vec<float, kBytes>;
  using Bits = Vec<int32_t, kBytes>;
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2High = 0.693359375f;  // ln 2 split so that n * kLn2High is exact
  constexpr float kLn2Low = -2.12194440e-4f;
  constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const Floats lowest = Floats{} - 87.0f;
  const Floats highest = Floats{} + 88.0f;
  Floats clamped = x < lowest ? lowest : x;
  clamped = clamped > highest ? highest : clamped;
  const Floats n = (clamped * kLog2e + kRoundMagic) - kRoundMagic;
  const Floats f = (clamped - n * kLn2High) - n * kLn2Low;
  Floats p = Floats{} + 1.0f / 5040.0f;
  p = p * f + 1.0f / 720.0f;
  p = p * f + 1.0f / 120.0f;
  p = p * f + 1.0f / 24.0f;
  p = p * f + 1.0f / 6.0f;
  p = p * f + 0.5f;
  p = p * f + 1.0f;
  p = p * f + 1.0f;
  const Bits exponent = (__builtin_convertvector(n, Bits) + 127) << 23;
  Floats two_to_n;
  std::memcpy(&two_to_n, &exponent, sizeof(two_to_n));
  Floats y = p * two_to_n;
  y = x < lowest ? Floats{} : y;
  x = x != x ? x : y;
}

// row[j] = exp(row[j] - max) for j < keys; returns their sum. Entries from keys up to the next
// whole vector (padding of the tile) may be overwritten.
template <int kBytes>
[[gnu::always_inline]] inline float exp_row(float* row, int keys, float max) {
  constexpr int kLanesF = kLanes<float, kBytes>;
  Vec<float, kBytes> sum{};
  for (int j = 0; j < keys; j += kLanesF) {
    Vec<float, kBytes> x;
    load(x, row + j);
    x -= max;
    exp_in_place<kBytes>(x);
    for (int lane = keys - j; lane < kLanesF; ++lane) x[lane] = 0.0f;  // past the last key
    store(row + j, x);
    sum += x;
  }
  float total = 0;
  for (int lane = 0; lane < kLanesF; ++lane) total += sum[lane];
  return total;
}

// fp64 is the oracle: libm's exp, in order.
template <int kBytes>
[[gnu::always_inline]] inline double exp_row(double* row, int keys, double max) {
  double sum = 0;
  for (int j = 0; j < keys; ++j) {
    row[j] = std::exp(row[j] - max);
    sum += row[j];
  }
  return sum;
}

// Each register block: kRowGroup query rows x two vectors of keys, accumulated over head_dim.
template <class T, int kBytes>
[[gnu::always_inline]] inline void scores_impl(const T* q, const T* keys_t, T* scores, int rows,
                                               int keys, int head_dim, int dim_stride, T scale) {
  using V = Vec<T, kBytes>;
  constexpr int kStep = kLanes<T, kBytes>;
  for (int i = 0; i < rows; i += kRowGroup) {
    const T* q0 = q + static_cast<int64_t>(i) * dim_stride;
    for (int j = 0; j < keys; j += 2 * kStep) {
      V acc[kRowGroup][2] = {};
      for (int c = 0; c < head_dim; ++c) {
        const T* k_row = keys_t + static_cast<int64_t>(c) * kTileKeys + j;
        V k_lo, k_hi;
        load(k_lo, k_row);
        load(k_hi, k_row + kStep);
        for (int r = 0; r < kRowGroup; ++r) {
          const T qv = q0[r * dim_stride + c];
          acc[r][0] += qv * k_lo;
          acc[r][1] += qv * k_hi;
        }
      }
      for (int r = 0; r < kRowGroup; ++r) {
        T* out = scores + static_cast<int64_t>(i + r) * kTileKeys + j;
        const V lo = acc[r][0] * scale, hi = acc[r][1] * scale;
        store(out, lo);
        store(out + kStep, hi);
      }
    }
  }
}

template <class T, int kBytes>
[[gnu::always_inline]] inline void softmax_impl(T* scores, T* row_max, T* row_sum, T* acc, int rows,
                                                int keys, int dim_stride) {
  constexpr T kMinusInf = -std::numeric_limits<T>::infinity();
  for (int i = 0; i < rows; ++i) {
    T* row = scores + static_cast<int64_t>(i) * kTileKeys;
    T tile_max = kMinusInf;
#pragma omp simd reduction(max : tile_max)
    for (int j = 0; j < keys; ++j) tile_max = row[j] > tile_max ? row[j] : tile_max;
    const T old_max = row_max[i];
    const T new_max = tile_max > old_max ? tile_max : old_max;
    const T sum = exp_row<kBytes>(row, keys, new_max);
    // The first tile of a row has nothing to rescale (and exp(-inf - -inf) would be NaN).
    if (old_max != kMinusInf && new_max != old_max) {
      const T correction = std::exp(old_max - new_max);
      row_sum[i] *= correction;
      T* acc_row = acc + static_cast<int64_t>(i) * dim_stride;
      for (int c = 0; c < dim_stride; ++c) acc_row[c] *= correction;
    }
    row_sum[i] += sum;
    row_max[i] = new_max;
  }
}

// Each register block: kRowGroup query rows x two vectors of head_dim, accumulated over keys.
template <class T, int kBytes>
[[gnu::always_inline]] inline void accumulate_impl(const T* probs, const T* values, T* acc,
                                                   int rows, int keys, int dim_stride) {
  using V = Vec<T, kBytes>;
  constexpr int kStep = kLanes<T, kBytes>;
  for (int i = 0; i < rows; i += kRowGroup) {
    const T* p0 = probs + static_cast<int64_t>(i) * kTileKeys;
    for (int c = 0; c < dim_stride; c += 2 * kStep) {
      V sum[kRowGroup][2];
      for (int r = 0; r < kRowGroup; ++r) {
        const T* a = acc + static_cast<int64_t>(i + r) * dim_stride + c;
        load(sum[r][0], a);
        load(sum[r][1], a + kStep);
      }
      for (int j = 0; j < keys; ++j) {
        const T* v_row = values + static_cast<int64_t>(j) * dim_stride + c;
        V v_lo, v_hi;
        load(v_lo, v_row);
        load(v_hi, v_row + kStep);
        for (int r = 0; r < kRowGroup; ++r) {
          const T p = p0[r * kTileKeys + j];
          sum[r][0] += p * v_lo;
          sum[r][1] += p * v_hi;
        }
      }
      for (int r = 0; r < kRowGroup; ++r) {
        T* a = acc + static_cast<int64_t>(i + r) * dim_stride + c;
        store(a, sum[r][0]);
        store(a + kStep, sum[r][1]);
      }
    }
  }
}

// The three steps for one vector width, as plain functions the dispatcher can point at.
template <class T, int kBytes>
struct TileKernels {
  static void scores(const T* q, const T* keys_t, T* out, int rows, int keys, int head_dim,
                     int dim_stride, T scale) {
    scores_impl<T, kBytes>(q, keys_t, out, rows, keys, head_dim, dim_stride, scale);
  }
  static void softmax(T* scores, T* row_max, T* row_sum, T* acc, int rows, int keys,
                      int dim_stride) {
    softmax_impl<T, kBytes>(scores, row_max, row_sum, acc, rows, keys, dim_stride);
  }
  static void accumulate(const T* probs, const T* values, T* acc, int rows, int keys,
                         int dim_stride) {
    accumulate_impl<T, kBytes>(probs, values, acc, rows, keys, dim_stride);
  }
};

// 16-byte vectors: SSE2 on x86-64 (baseline), NEON elsewhere.
using BaseFloat = TileKernels<float, 16>;
using BaseDouble = TileKernels<double, 16>;

#ifdef DBSP_CPU_AVX2_DISPATCH
template <class T>
struct Avx2Kernels {
  [[gnu::target("avx2,fma")]] static void scores(const T* q, const T* keys_t, T* out, int rows,
                                                 int keys, int head_dim, int dim_stride, T scale) {
    scores_impl<T, 32>(q, keys_t, out, rows, keys, head_dim, dim_stride, scale);
  }
  [[gnu::target("avx2,fma")]] static void softmax(T* scores, T* row_max, T* row_sum, T* acc,
                                                  int rows, int keys, int dim_stride) {
    softmax_impl<T, 32>(scores, row_max, row_sum, acc, rows, keys, dim_stride);
  }
  [[gnu::target("avx2,fma")]] static void accumulate(const T* probs, const T* values, T* acc,
                                                     int rows, int keys, int dim_stride) {
    accumulate_impl<T, 32>(probs, values, acc, rows, keys, dim_stride);
  }
};

bool cpu_has_avx2_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}
#define DBSP_TILE_DISPATCH(T, step, ...) \
  (cpu_has_avx2_fma() ? Avx2Kernels<T>::step(__VA_ARGS__) : TileKernels<T, 16>::step(__VA_ARGS__))
#else
#define DBSP_TILE_DISPATCH(T, step, ...) TileKernels<T, 16>::step(__VA_ARGS__)
#endif

}  // namespace

void tile_scores(const float* q, const float* keys_t, float* scores, int rows, int keys,
                 int head_dim, int dim_stride, float scale) {
  DBSP_TILE_DISPATCH(float, scores, q, keys_t, scores, rows, keys, head_dim, dim_stride, scale);
}
void tile_scores(const double* q, const double* keys_t, double* scores, int rows, int keys,
                 int head_dim, int dim_stride, double scale) {
  DBSP_TILE_DISPATCH(double, scores, q, keys_t, scores, rows, keys, head_dim, dim_stride, scale);
}

void tile_softmax(float* scores, float* row_max, float* row_sum, float* acc, int rows, int keys,
                  int dim_stride) {
  DBSP_TILE_DISPATCH(float, softmax, scores, row_max, row_sum, acc, rows, keys, dim_stride);
}
void tile_softmax(double* scores, double* row_max, double* row_sum, double* acc, int rows, int keys,
                  int dim_stride) {
  DBSP_TILE_DISPATCH(double, softmax, scores, row_max, row_sum, acc, rows, keys, dim_stride);
}

void tile_accumulate(const float* probs, const float* values, float* acc, int rows, int keys,
                     int dim_stride) {
  DBSP_TILE_DISPATCH(float, accumulate, probs, values, acc, rows, keys, dim_stride);
}
void tile_accumulate(const double* probs, const double* values, double* acc, int rows, int keys,
                     int dim_stride) {
  DBSP_TILE_DISPATCH(double, accumulate, probs, values, acc, rows, keys, dim_stride);
}

}  // namespace dbsp::cpu
