// Bit-sliced counting: rows enter through a carry-save adder tree (Harley-Seal), 16 or 8 at a
// time, so a row word costs about five logic operations (two with AVX-512); vectors of 4 words
// (AVX2, AVX-512) or 2 words (baseline x86-64 and elsewhere) are counted at once. This file holds
// the portable and AVX2 builds and picks the widest build the CPU runs.
#include "plan/bit_slices.hpp"

#include <algorithm>
#include <cstring>

#include "dbsp/error.hpp"
#include "plan/bit_slices_avx512.hpp"
#include "plan/bit_slices_kernels.hpp"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#endif

namespace dbsp::plan {
namespace {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DBSP_BIT_SLICES_AVX2 1
// tune=haswell keeps 256-bit unaligned moves whole (generic tuning splits them in two).
[[gnu::target("avx2,tune=haswell")]] void add_rows_avx2(const uint64_t* const* rows, int count,
                                                        int stride, uint64_t* planes,
                                                        int plane_count, bool overwrite) {
  add_rows_impl<4>(rows, count, stride, planes, plane_count, overwrite);
}
[[gnu::target("avx2,tune=haswell")]] void sum_heads_avx2(const MaskRows& rows, const int* heads,
                                                         int head_count, int q_begin, int q_end,
                                                         uint64_t* out, int plane_count,
                                                         size_t row_step, const uint64_t** pointers,
                                                         const uint64_t** bases) {
  sum_heads_impl<4>(rows, heads, head_count, q_begin, q_end, out, plane_count, row_step, pointers,
                    bases);
}
// Sixteen columns at a time in 16-bit lanes: each plane's 16 bits are broadcast, tested one lane
// per bit, and added at the plane's weight. Returns the columns done (a multiple of 16).
[[gnu::target("avx2,tune=haswell")]] int column_counts_avx2(const uint64_t* planes, int plane_count,
                                                            int stride, int columns, int32_t* out) {
  const __m256i bit = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096,
                                        8192, 16384, -32768);
  int j = 0;
  for (; j + 16 <= columns; j += 16) {
    const int w = j >> 6, shift = j & 63;
    __m256i sum = _mm256_setzero_si256();
    for (int k = 0; k < plane_count; ++k) {
      const auto chunk =
          static_cast<int16_t>((planes[static_cast<size_t>(k) * stride + w] >> shift) & 0xffff);
      const __m256i set = _mm256_cmpeq_epi16(_mm256_and_si256(_mm256_set1_epi16(chunk), bit), bit);
      sum = _mm256_add_epi16(
          sum, _mm256_and_si256(set, _mm256_set1_epi16(static_cast<int16_t>(1 << k))));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j),
                        _mm256_cvtepu16_epi32(_mm256_castsi256_si128(sum)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j + 8),
                        _mm256_cvtepu16_epi32(_mm256_extracti128_si256(sum, 1)));
  }
  return j;
}
// Per row, the weighted popcount of its planes under `mask` (stride words, a multiple of 4): a
// nibble table counts bits per byte, bytes are summed over up to 31 vectors of a plane (at most
// 8 each, so no byte overflows), then per 64-bit lane, and weighted by the plane.
[[gnu::target("avx2,tune=haswell")]] void masked_totals_avx2(const uint64_t* planes,
                                                             int plane_count, int stride,
                                                             size_t row_step, int rows,
                                                             const uint64_t* mask, int32_t* out,
                                                             size_t out_step) {
  const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2,
                                         1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
  constexpr int kFlush = 31;
  for (int r = 0; r < rows; ++r, planes += row_step, out += out_step) {
    __m256i total = zero;
    for (int k = 0; k < plane_count; ++k) {
      const uint64_t* plane = planes + static_cast<size_t>(k) * stride;
      __m256i lanes = zero;
      for (int first = 0; first < stride; first += 4 * kFlush) {
        const int end = std::min(stride, first + 4 * kFlush);
        __m256i bytes = zero;
        for (int w = first; w < end; w += 4) {
          const __m256i x =
              _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(plane + w)),
                               _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mask + w)));
          const __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(x, low));
          const __m256i hi =
              _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(x, 4), low));
          bytes = _mm256_add_epi8(bytes, _mm256_add_epi8(lo, hi));
        }
        lanes = _mm256_add_epi64(lanes, _mm256_sad_epu8(bytes, zero));
      }
      total = _mm256_add_epi64(total, _mm256_sll_epi64(lanes, _mm_cvtsi32_si128(k)));
    }
    const __m128i half =
        _mm_add_epi64(_mm256_castsi256_si128(total), _mm256_extracti128_si256(total, 1));
    *out = static_cast<int32_t>(_mm_cvtsi128_si64(half) + _mm_extract_epi64(half, 1));
  }
}
#endif

Simd widest_allowed = Simd::avx512;

// The build for `level` runs here: the CPU has it and the tests' limit allows it.
bool use(Simd level) { return widest_allowed >= level && simd_available(level); }

}  // namespace

void limit_simd(Simd widest) { widest_allowed = widest; }

bool simd_available(Simd level) {
  switch (level) {
    case Simd::portable:
      return true;
    case Simd::avx2:
#ifdef DBSP_BIT_SLICES_AVX2
      return __builtin_cpu_supports("avx2");
#else
      return false;
#endif
    case Simd::avx512:
      return avx512::usable();
  }
  return false;
}

void add_rows(const uint64_t* const* rows, int count, int stride, uint64_t* planes, int plane_count,
              bool overwrite) {
  require(stride % kStrideWords == 0, "add_rows: stride ", stride, " is not a multiple of ",
          kStrideWords);
  if (use(Simd::avx512))
    return avx512::add_rows(rows, count, stride, planes, plane_count, overwrite);
#ifdef DBSP_BIT_SLICES_AVX2
  if (use(Simd::avx2)) return add_rows_avx2(rows, count, stride, planes, plane_count, overwrite);
#endif
  add_rows_impl<2>(rows, count, stride, planes, plane_count, overwrite);
}

void sum_heads(const MaskRows& rows, const int* heads, int head_count, int q_begin, int q_end,
               uint64_t* out, int plane_count, size_t row_step) {
  require(rows.stride % kStrideWords == 0, "sum_heads: stride ", rows.stride,
          " is not a multiple of ", kStrideWords);
  if (head_count == 1 && plane_count == 1) {  // the counts are the rows themselves
    for (int i = q_begin; i < q_end; ++i)
      std::copy_n(rows.row(heads[0], i), rows.stride,
                  out + static_cast<size_t>(i - q_begin) * row_step);
    return;
  }
  std::vector<const uint64_t*> pointers(2 * static_cast<size_t>(head_count));
  const uint64_t** bases = pointers.data() + head_count;
  if (use(Simd::avx512)) {
    return avx512::sum_heads(rows, heads, head_count, q_begin, q_end, out, plane_count, row_step,
                             pointers.data(), bases);
  }
#ifdef DBSP_BIT_SLICES_AVX2
  if (use(Simd::avx2)) {
    return sum_heads_avx2(rows, heads, head_count, q_begin, q_end, out, plane_count, row_step,
                          pointers.data(), bases);
  }
#endif
  sum_heads_impl<2>(rows, heads, head_count, q_begin, q_end, out, plane_count, row_step,
                    pointers.data(), bases);
}

void add_counts(const uint64_t* from, int from_planes, uint64_t* to, int to_planes, int stride) {
  for (int w = 0; w < stride; ++w) {
    uint64_t carry = 0;
    for (int k = 0; k < to_planes; ++k) {
      const uint64_t a = k < from_planes ? from[static_cast<size_t>(k) * stride + w] : 0;
      uint64_t& t = to[static_cast<size_t>(k) * stride + w];
      const uint64_t u = t ^ a;
      const uint64_t next = (t & a) | (u & carry);
      t = u ^ carry;
      carry = next;
      if (k + 1 >= from_planes && carry == 0) break;
    }
  }
}

void column_counts(const uint64_t* planes, int plane_count, int stride, int columns, int32_t* out) {
  if (plane_count > 16) {  // counts past 16 bits: one column at a time
    for (int j = 0; j < columns; ++j)
      out[j] = int32_t(column_count(planes, plane_count, stride, j));
    return;
  }
  int done = 0;
#ifdef DBSP_BIT_SLICES_AVX2
  if (use(Simd::avx2)) done = column_counts_avx2(planes, plane_count, stride, columns, out);
#endif
  // Four columns at a time in 16-bit lanes: each plane's nibble spreads to one bit per lane.
  static constexpr uint64_t kSpread[16] = {
      0x0000000000000000, 0x0000000000000001, 0x0000000000010000, 0x0000000000010001,
      0x0000000100000000, 0x0000000100000001, 0x0000000100010000, 0x0000000100010001,
      0x0001000000000000, 0x0001000000000001, 0x0001000000010000, 0x0001000000010001,
      0x0001000100000000, 0x0001000100000001, 0x0001000100010000, 0x0001000100010001};
  for (int j = done; j < columns; j += 4) {
    const int w = j >> 6, shift = j & 63;
    uint64_t lanes = 0;
    for (int k = 0; k < plane_count; ++k)
      lanes += kSpread[(planes[static_cast<size_t>(k) * stride + w] >> shift) & 15] << k;
    for (int l = 0; l < 4 && j + l < columns; ++l)
      out[j + l] = int32_t((lanes >> (16 * l)) & 0xffff);
  }
}

SegmentPieces::SegmentPieces(const std::vector<int>& bounds) {
  first.push_back(0);
  for (size_t s = 0; s + 1 < bounds.size(); ++s) {
    for (int b = bounds[s]; b < bounds[s + 1];) {
      const int word = b >> 6, low = b & 63, high = std::min(64, bounds[s + 1] - (word << 6));
      const uint64_t below_high = high == 64 ? ~uint64_t{0} : (uint64_t{1} << high) - 1;
      pieces.push_back({word, below_high & (~uint64_t{0} << low)});
      b = (word + 1) << 6;
    }
    first.push_back(static_cast<int>(pieces.size()));
  }
}

SegmentPieces::SegmentPieces(const std::vector<int>& part, int parts) {
  const int words = (static_cast<int>(part.size()) + 63) / 64;
  std::vector<uint64_t> masks(static_cast<size_t>(parts) * words, 0);
  for (size_t j = 0; j < part.size(); ++j)
    masks[static_cast<size_t>(part[j]) * words + (j >> 6)] |= uint64_t{1} << (j & 63);
  first.push_back(0);
  for (int s = 0; s < parts; ++s) {
    for (int w = 0; w < words; ++w) {
      if (const uint64_t m = masks[static_cast<size_t>(s) * words + w]) pieces.push_back({w, m});
    }
    first.push_back(static_cast<int>(pieces.size()));
  }
}

namespace {

// Plane counts are summed separately and weighted once per segment; with K fixed the plane loop
// unrolls.
template <int K, class Out>
void segment_sums_fixed(const uint64_t* planes, int stride, size_t row_step, int rows,
                        const SegmentPieces& pieces, Out* out, size_t out_step) {
  // (Locals: stores into `out` could alias the piece lists, which would be reloaded per piece.)
  const SegmentPieces::Piece* const piece = pieces.pieces.data();
  const int* const first = pieces.first.data();
  const int segments = pieces.segments();
  for (int r = 0; r < rows; ++r, planes += row_step, out += out_step) {
    for (int s = 0, x = 0; s < segments; ++s) {
      int64_t plane_sum[K] = {};
      for (const int end = first[s + 1]; x < end; ++x) {
        const uint64_t* at = planes + piece[x].word;
        const uint64_t mask = piece[x].mask;
        for (int k = 0; k < K; ++k) plane_sum[k] += std::popcount(at[k * stride] & mask);
      }
      int64_t sum = 0;
      for (int k = 0; k < K; ++k) sum += plane_sum[k] << k;
      out[s] = static_cast<Out>(sum);
    }
  }
}

template <class Out>
void segment_sums_any(const uint64_t* planes, int plane_count, int stride, size_t row_step,
                      int rows, const SegmentPieces& pieces, Out* out, size_t out_step) {
  switch (plane_count) {
#define DBSP_SEGMENT_SUMS_CASE(K) \
  case K:                         \
    return segment_sums_fixed<K>(planes, stride, row_step, rows, pieces, out, out_step);
    // Up to 16 planes: the statistics count up to 2^16 - 1 query blocks per column this way.
    DBSP_SEGMENT_SUMS_CASE(1)
    DBSP_SEGMENT_SUMS_CASE(2)
    DBSP_SEGMENT_SUMS_CASE(3)
    DBSP_SEGMENT_SUMS_CASE(4)
    DBSP_SEGMENT_SUMS_CASE(5)
    DBSP_SEGMENT_SUMS_CASE(6)
    DBSP_SEGMENT_SUMS_CASE(7)
    DBSP_SEGMENT_SUMS_CASE(8)
    DBSP_SEGMENT_SUMS_CASE(9)
    DBSP_SEGMENT_SUMS_CASE(10)
    DBSP_SEGMENT_SUMS_CASE(11)
    DBSP_SEGMENT_SUMS_CASE(12)
    DBSP_SEGMENT_SUMS_CASE(13)
    DBSP_SEGMENT_SUMS_CASE(14)
    DBSP_SEGMENT_SUMS_CASE(15)
    DBSP_SEGMENT_SUMS_CASE(16)
#undef DBSP_SEGMENT_SUMS_CASE
    default:
      break;
  }
  for (int r = 0; r < rows; ++r, planes += row_step, out += out_step) {
    for (int s = 0; s < pieces.segments(); ++s) {
      int64_t sum = 0;
      for (int x = pieces.first[s]; x < pieces.first[s + 1]; ++x)
        sum +=
            masked_sum(planes, plane_count, stride, pieces.pieces[x].word, pieces.pieces[x].mask);
      out[s] = static_cast<Out>(sum);
    }
  }
}

}  // namespace

void segment_sums(const uint64_t* planes, int plane_count, int stride, const SegmentPieces& pieces,
                  int64_t* out) {
  segment_sums_any(planes, plane_count, stride, 0, 1, pieces, out, 0);
}

void segment_sums(const uint64_t* planes, int plane_count, int stride, size_t row_step, int rows,
                  const SegmentPieces& pieces, int32_t* out, size_t out_step) {
  const int segments = pieces.segments();
  // Full-width masks per segment: whole vectors are counted, so a segment costs the same however
  // its columns are scattered. Worth it over the pieces when segments are scattered (one piece
  // costs about a fifth of what a segment's 8-word vectors cost per plane) or there is just one.
  const auto segment_masks = [&] {
    std::vector<uint64_t> masks(static_cast<size_t>(segments) * stride, 0);
    for (int s = 0; s < segments; ++s) {
      for (int x = pieces.first[s]; x < pieces.first[s + 1]; ++x) {
        const SegmentPieces::Piece& piece = pieces.pieces[x];
        require(piece.word < stride, "segment_sums: piece in word ", piece.word,
                " past the stride ", stride);
        masks[static_cast<size_t>(s) * stride + piece.word] |= piece.mask;
      }
    }
    return masks;
  };
  if (use(Simd::avx512) && (segments == 1 || 5 * segments * ((stride + 7) / 8) <=
                                                 static_cast<int>(pieces.pieces.size()))) {
    return avx512::masked_segment_sums(planes, plane_count, stride, row_step, rows,
                                       segment_masks().data(), segments, out, out_step);
  }
#ifdef DBSP_BIT_SLICES_AVX2
  // One segment (row totals): whole vectors under a mask, the pieces' words are never split.
  if (segments == 1 && stride % 4 == 0 && use(Simd::avx2)) {
    return masked_totals_avx2(planes, plane_count, stride, row_step, rows, segment_masks().data(),
                              out, out_step);
  }
#endif
  segment_sums_any(planes, plane_count, stride, row_step, rows, pieces, out, out_step);
}

}  // namespace dbsp::plan
