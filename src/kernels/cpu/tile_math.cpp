// Tile arithmetic of online-softmax attention, register-blocked with GCC vector types of a width
// chosen per instruction set: on x86-64 an AVX2/FMA build (32-byte vectors) is picked at run time
// when the CPU has it, else the baseline SSE2 build (16-byte vectors), since the default compile
// flags target baseline x86-64 only.
#include "kernels/cpu/tile_math.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

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

// exp of float softmax arguments (<= 0 after the max subtraction): Cody-Waite range reduction and
// a degree-7 Taylor polynomial (a few ulp), branch-free on whole vectors; glibc's expf is scalar.
// Arguments below -87 (weights under 1e-38 of the row max, and -inf) give 0; NaN stays NaN so that
// bad inputs surface in the output. fp64 is the oracle: libm's exp on every lane.
template <class T, int kBytes>
[[gnu::always_inline]] inline void exp_in_place(Vec<T, kBytes>& x) {
  if constexpr (std::is_same_v<T, double>) {
    for (int lane = 0; lane < kLanes<double, kBytes>; ++lane) x[lane] = std::exp(x[lane]);
  } else {
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
}

// Register block: two vectors of query rows x kKeyGroup keys, accumulated over head_dim.
template <class T, int kBytes>
[[gnu::always_inline]] inline void scores_impl(const T* q_t, const T* const* keys, T* scores_t,
                                               int rows, int count, int head_dim, T scale) {
  using V = Vec<T, kBytes>;
  constexpr int kStep = kLanes<T, kBytes>;
  for (int j = 0; j < count; j += kKeyGroup) {
    const T* k[kKeyGroup];
    for (int g = 0; g < kKeyGroup; ++g) k[g] = keys[j + g];
    for (int i = 0; i < rows; i += 2 * kStep) {
      V acc[kKeyGroup][2] = {};
      for (int c = 0; c < head_dim; ++c) {
        const T* q_row = q_t + static_cast<int64_t>(c) * kTileRows + i;
        V q_lo, q_hi;
        load(q_lo, q_row);
        load(q_hi, q_row + kStep);
        for (int g = 0; g < kKeyGroup; ++g) {
          const T kv = k[g][c];
          acc[g][0] += kv * q_lo;
          acc[g][1] += kv * q_hi;
        }
      }
      for (int g = 0; g < kKeyGroup; ++g) {
        T* out = scores_t + static_cast<int64_t>(j + g) * kTileRows + i;
        const V lo = acc[g][0] * scale, hi = acc[g][1] * scale;
        store(out, lo);
        store(out + kStep, hi);
      }
    }
  }
}

// One vector of query rows at a time: the max and the sum run down the key axis.
template <class T, int kBytes>
[[gnu::always_inline]] inline void softmax_impl(T* scores_t, T* row_max, T* row_sum, T* acc,
                                                int rows, int count, int dim_stride) {
  using V = Vec<T, kBytes>;
  constexpr int kStep = kLanes<T, kBytes>;
  for (int i = 0; i < rows; i += kStep) {
    V tile_max = V{} - std::numeric_limits<T>::infinity();
    for (int j = 0; j < count; ++j) {
      V s;
      load(s, scores_t + static_cast<int64_t>(j) * kTileRows + i);
      tile_max = s > tile_max ? s : tile_max;  // NaN scores are skipped here but poison the sum
    }
    V old_max, sum_before;
    load(old_max, row_max + i);
    load(sum_before, row_sum + i);
    const V new_max = tile_max > old_max ? tile_max : old_max;
    V sum{};
    for (int j = 0; j < count; ++j) {
      T* s_row = scores_t + static_cast<int64_t>(j) * kTileRows + i;
      V s;
      load(s, s_row);
      s -= new_max;
      exp_in_place<T, kBytes>(s);
      store(s_row, s);
      sum += s;
    }
    // exp(-inf - finite) = 0: a row's first tile needs no special case.
    V correction = old_max - new_max;
    exp_in_place<T, kBytes>(correction);
    const V new_sum = sum_before * correction + sum;
    store(row_sum + i, new_sum);
    store(row_max + i, new_max);
    for (int lane = 0; lane < kStep && i + lane < rows; ++lane) {
      const T factor = correction[lane];
      if (factor == T(1)) continue;
      T* acc_row = acc + static_cast<int64_t>(i + lane) * dim_stride;
      for (int c = 0; c < dim_stride; ++c) acc_row[c] *= factor;
    }
  }
}

// Register block: kRowGroup query rows x two vectors of head_dim, accumulated over keys.
template <class T, int kBytes>
[[gnu::always_inline]] inline void accumulate_impl(const T* probs_t, const T* const* values, T* acc,
                                                   int rows, int count, int dim_stride) {
  using V = Vec<T, kBytes>;
  constexpr int kStep = kLanes<T, kBytes>;
  for (int i = 0; i < rows; i += kRowGroup) {
    for (int c = 0; c < dim_stride; c += 2 * kStep) {
      V sum[kRowGroup][2];
      for (int r = 0; r < kRowGroup; ++r) {
        const T* a = acc + static_cast<int64_t>(i + r) * dim_stride + c;
        load(sum[r][0], a);
        load(sum[r][1], a + kStep);
      }
      for (int j = 0; j < count; ++j) {
        const T* v_row = values[j] + c;
        const T* p = probs_t + static_cast<int64_t>(j) * kTileRows + i;
        V v_lo, v_hi;
        load(v_lo, v_row);
        load(v_hi, v_row + kStep);
        for (int r = 0; r < kRowGroup; ++r) {
          sum[r][0] += p[r] * v_lo;
          sum[r][1] += p[r] * v_hi;
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

// The three steps for one vector width, as plain functions the dispatcher can call.
template <class T, int kBytes>
struct TileKernels {
  static void scores(const T* q_t, const T* const* keys, T* scores_t, int rows, int count,
                     int head_dim, T scale) {
    scores_impl<T, kBytes>(q_t, keys, scores_t, rows, count, head_dim, scale);
  }
  static void softmax(T* scores_t, T* row_max, T* row_sum, T* acc, int rows, int count,
                      int dim_stride) {
    softmax_impl<T, kBytes>(scores_t, row_max, row_sum, acc, rows, count, dim_stride);
  }
  static void accumulate(const T* probs_t, const T* const* values, T* acc, int rows, int count,
                         int dim_stride) {
    accumulate_impl<T, kBytes>(probs_t, values, acc, rows, count, dim_stride);
  }
};

#ifdef DBSP_CPU_AVX2_DISPATCH
template <class T>
struct Avx2Kernels {
  [[gnu::target("avx2,fma")]] static void scores(const T* q_t, const T* const* keys, T* scores_t,
                                                 int rows, int count, int head_dim, T scale) {
    scores_impl<T, 32>(q_t, keys, scores_t, rows, count, head_dim, scale);
  }
  [[gnu::target("avx2,fma")]] static void softmax(T* scores_t, T* row_max, T* row_sum, T* acc,
                                                  int rows, int count, int dim_stride) {
    softmax_impl<T, 32>(scores_t, row_max, row_sum, acc, rows, count, dim_stride);
  }
  [[gnu::target("avx2,fma")]] static void accumulate(const T* probs_t, const T* const* values,
                                                     T* acc, int rows, int count, int dim_stride) {
    accumulate_impl<T, 32>(probs_t, values, acc, rows, count, dim_stride);
  }
};

bool cpu_has_avx2_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}
#define DBSP_TILE_DISPATCH(T, step, ...) \
  (cpu_has_avx2_fma() ? Avx2Kernels<T>::step(__VA_ARGS__) : TileKernels<T, 16>::step(__VA_ARGS__))
#else
// 16-byte vectors: NEON, or whatever the compiler makes of them elsewhere.
#define DBSP_TILE_DISPATCH(T, step, ...) TileKernels<T, 16>::step(__VA_ARGS__)
#endif

}  // namespace

void tile_scores(const float* q_t, const float* const* keys, float* scores_t, int rows, int count,
                 int head_dim, float scale) {
  DBSP_TILE_DISPATCH(float, scores, q_t, keys, scores_t, rows, count, head_dim, scale);
}
void tile_scores(const double* q_t, const double* const* keys, double* scores_t, int rows,
                 int count, int head_dim, double scale) {
  DBSP_TILE_DISPATCH(double, scores, q_t, keys, scores_t, rows, count, head_dim, scale);
}

void tile_softmax(float* scores_t, float* row_max, float* row_sum, float* acc, int rows, int count,
                  int dim_stride) {
  DBSP_TILE_DISPATCH(float, softmax, scores_t, row_max, row_sum, acc, rows, count, dim_stride);
}
void tile_softmax(double* scores_t, double* row_max, double* row_sum, double* acc, int rows,
                  int count, int dim_stride) {
  DBSP_TILE_DISPATCH(double, softmax, scores_t, row_max, row_sum, acc, rows, count, dim_stride);
}

void tile_accumulate(const float* probs_t, const float* const* values, float* acc, int rows,
                     int count, int dim_stride) {
  DBSP_TILE_DISPATCH(float, accumulate, probs_t, values, acc, rows, count, dim_stride);
}
void tile_accumulate(const double* probs_t, const double* const* values, double* acc, int rows,
                     int count, int dim_stride) {
  DBSP_TILE_DISPATCH(double, accumulate, probs_t, values, acc, rows, count, dim_stride);
}

}  // namespace dbsp::cpu
