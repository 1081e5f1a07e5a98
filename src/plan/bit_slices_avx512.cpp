// AVX-512 builds of the bit-sliced kernels, for the server CPUs that plan next to the GPUs
// (Sapphire Rapids, Zen 4): the carry-save adder takes two ternary-logic instructions instead of
// five, and masked popcounts are one instruction per 8 words (VPOPCNTDQ) instead of one per word.
// Only this file is built for AVX-512, under a target pragma, and only what the pragma covers:
// standard headers come first, and the shared kernel templates have internal linkage.
#include "plan/bit_slices_avx512.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DBSP_BIT_SLICES_AVX512 1
#include <immintrin.h>

#pragma GCC push_options
// GCC 12's AVX-512 intrinsics start some results from deliberately undefined vectors, which its
// own uninitialized-use warning flags.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx512vpopcntdq,tune=icelake-server")
#define DBSP_BIT_SLICES_TERNARY 1
#include "plan/bit_slices_kernels.hpp"

namespace dbsp::plan::avx512 {

void add_rows(const uint64_t* const* rows, int count, int stride, uint64_t* planes, int plane_count,
              bool overwrite) {
  add_rows_impl<4>(rows, count, stride, planes, plane_count, overwrite);
}

void sum_heads(const MaskRows& rows, const int* heads, int head_count, int q_begin, int q_end,
               uint64_t* out, int plane_count, size_t row_step, const uint64_t** pointers,
               const uint64_t** bases) {
  sum_heads_impl<4>(rows, heads, head_count, q_begin, q_end, out, plane_count, row_step, pointers,
                    bases);
}

void masked_segment_sums(const uint64_t* planes, int plane_count, int stride, size_t row_step,
                         int rows, const uint64_t* masks, int segments, int32_t* out,
                         size_t out_step) {
  const int full = stride / 8 * 8;
  const auto tail = static_cast<__mmask8>((1u << (stride - full)) - 1);
  for (int r = 0; r < rows; ++r, planes += row_step, out += out_step) {
    for (int s = 0; s < segments; ++s) {
      const uint64_t* mask = masks + static_cast<size_t>(s) * stride;
      __m512i total = _mm512_setzero_si512();
      for (int k = 0; k < plane_count; ++k) {
        const uint64_t* plane = planes + static_cast<size_t>(k) * stride;
        __m512i bits = _mm512_setzero_si512();
        for (int w = 0; w < full; w += 8) {
          bits = _mm512_add_epi64(
              bits, _mm512_popcnt_epi64(_mm512_and_si512(_mm512_loadu_si512(plane + w),
                                                         _mm512_loadu_si512(mask + w))));
        }
        if (tail != 0) {
          bits = _mm512_add_epi64(bits, _mm512_popcnt_epi64(_mm512_and_si512(
                                            _mm512_maskz_loadu_epi64(tail, plane + full),
                                            _mm512_maskz_loadu_epi64(tail, mask + full))));
        }
        total = _mm512_add_epi64(total, _mm512_sll_epi64(bits, _mm_cvtsi32_si128(k)));
      }
      out[s] = static_cast<int32_t>(_mm512_reduce_add_epi64(total));
    }
  }
}

}  // namespace dbsp::plan::avx512

#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

namespace dbsp::plan::avx512 {

bool usable() {
#ifdef DBSP_BIT_SLICES_AVX512
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512vpopcntdq");
  return has;
#else
  return false;
#endif
}

#ifndef DBSP_BIT_SLICES_AVX512
// Never called (usable() is false): the dispatch in bit_slices.cpp still links.
void add_rows(const uint64_t* const*, int, int, uint64_t*, int, bool) {}
void sum_heads(const MaskRows&, const int*, int, int, int, uint64_t*, int, size_t, const uint64_t**,
               const uint64_t**) {}
void masked_segment_sums(const uint64_t*, int, int, size_t, int, const uint64_t*, int, int32_t*,
                         size_t) {}
#endif

}  // namespace dbsp::plan::avx512
