// Bit-sliced counting: rows enter through a carry-save adder tree (Harley-Seal), 16 or 8 at a
// time, so a row word costs about five logic operations; vectors of 4 words (AVX2) or 2 words
// (baseline x86-64 and elsewhere) are counted at once.
#include "plan/bit_slices.hpp"

#include <algorithm>
#include <cstring>

#include "dbsp/error.hpp"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#endif

namespace dbsp::plan {
namespace {

template <int N>
using Lanes [[gnu::vector_size(8 * N)]] = uint64_t;

template <int N>
[[gnu::always_inline]] inline void load(Lanes<N>& v, const uint64_t* p) {
  std::memcpy(&v, p, sizeof(v));
}
template <int N>
[[gnu::always_inline]] inline void store(uint64_t* p, const Lanes<N>& v) {
  std::memcpy(p, &v, sizeof(v));
}

// Carry-save adder: high:low = a + b + c.
template <int N>
[[gnu::always_inline]] inline void csa(Lanes<N>& high, Lanes<N>& low, const Lanes<N>& a,
                                       const Lanes<N>& b, const Lanes<N>& c) {
  const Lanes<N> u = a ^ b;
  high = (a & b) | (u & c);
  low = u ^ c;
}

// Adds `carry` (of weight 2^first) into planes [first, plane_count) held in memory.
template <int N>
[[gnu::always_inline]] inline void ripple(const Lanes<N>& in, uint64_t* base, int first,
                                          int plane_count, size_t stride) {
  Lanes<N> carry = in;
  for (int k = first; k < plane_count; ++k) {
    uint64_t* at = base + k * stride;
    Lanes<N> plane;
    load<N>(plane, at);
    store<N>(at, plane ^ carry);
    carry &= plane;
  }
}

// Row k of `in` (zero from `valid` on, kPartial).
template <int N, bool kPartial>
[[gnu::always_inline]] inline void load_row(Lanes<N>& v, const uint64_t* const* in, int k, int word,
                                            int valid) {
  if (!kPartial || k < valid) {
    load<N>(v, in[k] + word);
  } else {
    v = Lanes<N>{};
  }
}

// Eight rows into ones, twos and fours; their carry of weight 8 goes to `eights_out`. Rows from
// `valid` on count as zero (kPartial: the tail of a row list), so that a short tail costs one
// tree, not a ripple per row.
template <int N, bool kPartial = false>
[[gnu::always_inline]] inline void tree8(Lanes<N>& eights_out, const uint64_t* const* in, int word,
                                         Lanes<N>& ones, Lanes<N>& twos, Lanes<N>& fours,
                                         int valid = 8) {
  Lanes<N> a, b, twos_a, twos_b, fours_a, fours_b;
  load_row<N, kPartial>(a, in, 0, word, valid), load_row<N, kPartial>(b, in, 1, word, valid);
  csa<N>(twos_a, ones, ones, a, b);
  load_row<N, kPartial>(a, in, 2, word, valid), load_row<N, kPartial>(b, in, 3, word, valid);
  csa<N>(twos_b, ones, ones, a, b);
  csa<N>(fours_a, twos, twos, twos_a, twos_b);
  load_row<N, kPartial>(a, in, 4, word, valid), load_row<N, kPartial>(b, in, 5, word, valid);
  csa<N>(twos_a, ones, ones, a, b);
  load_row<N, kPartial>(a, in, 6, word, valid), load_row<N, kPartial>(b, in, 7, word, valid);
  csa<N>(twos_b, ones, ones, a, b);
  csa<N>(fours_b, twos, twos, twos_a, twos_b);
  csa<N>(eights_out, fours, fours, fours_a, fours_b);
}

// Sixteen rows; their carry of weight 16 goes to `sixteens_out`.
template <int N>
[[gnu::always_inline]] inline void tree16(Lanes<N>& sixteens_out, const uint64_t* const* in,
                                          int word, Lanes<N>& ones, Lanes<N>& twos, Lanes<N>& fours,
                                          Lanes<N>& eights) {
  Lanes<N> eights_a, eights_b;
  tree8<N>(eights_a, in, word, ones, twos, fours);
  tree8<N>(eights_b, in + 8, word, ones, twos, fours);
  csa<N>(sixteens_out, eights, eights, eights_a, eights_b);
}

// Adds the words [word, word + N) of every row (or, kFresh, overwrites the counters with their
// counts). Planes 1 to 16 stay in registers; carries of weight 32 ripple into the planes above.
// Rows are read at rows[r] + row_word (row_word = word unless the caller offsets the rows).
template <int N, bool kFresh>
[[gnu::always_inline]] inline void add_vector(const uint64_t* const* rows, int count, int word,
                                              size_t stride, uint64_t* planes, int plane_count,
                                              size_t row_word) {
  constexpr int kHeld = 5;  // planes held in registers
  uint64_t* base = planes + word;
  Lanes<N> ones{}, twos{}, fours{}, eights{}, sixteens{};
  if constexpr (kFresh) {
    for (int k = kHeld; k < plane_count; ++k) store<N>(base + k * stride, ones);
  } else {
    if (plane_count > 0) load<N>(ones, base);
    if (plane_count > 1) load<N>(twos, base + stride);
    if (plane_count > 2) load<N>(fours, base + 2 * stride);
    if (plane_count > 3) load<N>(eights, base + 3 * stride);
    if (plane_count > 4) load<N>(sixteens, base + 4 * stride);
  }
  Lanes<N> carry;
  int r = 0;
  for (; r + 32 <= count; r += 32) {
    Lanes<N> sixteens_a, sixteens_b;
    tree16<N>(sixteens_a, rows + r, row_word, ones, twos, fours, eights);
    tree16<N>(sixteens_b, rows + r + 16, row_word, ones, twos, fours, eights);
    csa<N>(carry, sixteens, sixteens, sixteens_a, sixteens_b);
    ripple<N>(carry, base, kHeld, plane_count, stride);
  }
  if (r + 16 <= count) {
    tree16<N>(carry, rows + r, row_word, ones, twos, fours, eights);
    const Lanes<N> up = sixteens & carry;
    sixteens ^= carry;
    ripple<N>(up, base, kHeld, plane_count, stride);
    r += 16;
  }
  for (; r < count; r += 8) {
    if (count - r >= 8) {
      tree8<N>(carry, rows + r, row_word, ones, twos, fours);
    } else {
      tree8<N, true>(carry, rows + r, row_word, ones, twos, fours, count - r);
    }
    Lanes<N> up = eights & carry;
    eights ^= carry;
    carry = sixteens & up;
    sixteens ^= up;
    ripple<N>(carry, base, kHeld, plane_count, stride);
  }
  if (plane_count > 0) store<N>(base, ones);
  if (plane_count > 1) store<N>(base + stride, twos);
  if (plane_count > 2) store<N>(base + 2 * stride, fours);
  if (plane_count > 3) store<N>(base + 3 * stride, eights);
  if (plane_count > 4) store<N>(base + 4 * stride, sixteens);
}

template <int N>
[[gnu::always_inline]] inline void add_rows_impl(const uint64_t* const* rows, int count, int stride,
                                                 uint64_t* planes, int plane_count,
                                                 bool overwrite) {
  static_assert(kStrideWords % N == 0);
  // 32 rows at a time across all words, so that the rows are read in memory order (a few
  // cache lines at a time, which the prefetchers follow) and each row's lines are reused at once.
  constexpr int kGroup = 32;
  for (int first = 0; first < count; first += kGroup) {
    const int group = std::min(kGroup, count - first);
    for (int word = 0; word < stride; word += N) {
      if (overwrite && first == 0) {
        add_vector<N, true>(rows + first, group, word, static_cast<size_t>(stride), planes,
                            plane_count, word);
      } else {
        add_vector<N, false>(rows + first, group, word, static_cast<size_t>(stride), planes,
                             plane_count, word);
      }
    }
  }
  if (count == 0 && overwrite) {
    for (int word = 0; word < stride; word += N)
      add_vector<N, true>(rows, 0, word, static_cast<size_t>(stride), planes, plane_count, word);
  }
}

// `pointers` has room for head_count rows. Query blocks go in blocks of 32 and heads in batches of
// 16 within a block, so that each head's rows are read in runs (a few streams at a time, which
// the prefetchers follow) and the block's counters stay in cache between batches. (Plain pointer
// arithmetic only: inside the AVX2 build, calls to functions of other target options are not
// inlined.)
template <int N>
[[gnu::always_inline]] inline void sum_heads_impl(const MaskRows& rows, const int* heads,
                                                  int head_count, int q_begin, int q_end,
                                                  uint64_t* out, int plane_count, size_t row_step,
                                                  const uint64_t** pointers,
                                                  const uint64_t** bases) {
  constexpr int kBlockRows = 32, kBatchHeads = 32;
  // The view's fields in locals: stores into `pointers` could alias them.
  const size_t q_blocks = static_cast<size_t>(rows.q_blocks), padded_from = rows.padded_from;
  const uint64_t *const bits = rows.bits, *const padded = rows.padded;
  const size_t words = static_cast<size_t>(rows.words), stride = static_cast<size_t>(rows.stride);
  out -= static_cast<size_t>(q_begin) * row_step;  // counters of query block i at out + i * step
  for (size_t first = q_begin; first < static_cast<size_t>(q_end); first += kBlockRows) {
    const size_t end = std::min(static_cast<size_t>(q_end), first + kBlockRows);
    for (int batch = 0; batch < head_count; batch += kBatchHeads) {
      const int count = std::min(kBatchHeads, head_count - batch);
      // Query blocks below plain_end have every row of the batch in the mask itself: rows are
      // read at the heads' first rows plus i * words, with no pointers to build per block.
      size_t plain_end = end;
      for (int x = 0; x < count; ++x) {
        const size_t head_first = static_cast<size_t>(heads[batch + x]) * q_blocks;
        bases[x] = bits + head_first * words;
        plain_end = std::min(plain_end, padded_from > head_first ? padded_from - head_first : 0);
      }
      for (size_t i = first; i < end; ++i) {
        const uint64_t* const* in = bases;
        size_t offset = i * words;
        if (i >= plain_end) {
          for (int x = 0; x < count; ++x) {
            const size_t at = static_cast<size_t>(heads[batch + x]) * q_blocks + i;
            pointers[x] =
                at < padded_from ? bits + at * words : padded + (at - padded_from) * stride;
          }
          in = pointers;
          offset = 0;
        }
        uint64_t* counters = out + i * row_step;
        for (int word = 0; word < static_cast<int>(stride); word += N) {
          if (batch == 0) {
            add_vector<N, true>(in, count, word, stride, counters, plane_count, offset + word);
          } else {
            add_vector<N, false>(in, count, word, stride, counters, plane_count, offset + word);
          }
        }
      }
    }
  }
}

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

bool avx2_allowed = true;

bool cpu_has_avx2() {
#ifdef DBSP_BIT_SLICES_AVX2
  static const bool has = __builtin_cpu_supports("avx2");
  return has && avx2_allowed;
#else
  return false;
#endif
}

}  // namespace

void allow_avx2(bool allowed) { avx2_allowed = allowed; }

void add_rows(const uint64_t* const* rows, int count, int stride, uint64_t* planes, int plane_count,
              bool overwrite) {
  require(stride % kStrideWords == 0, "add_rows: stride ", stride, " is not a multiple of ",
          kStrideWords);
#ifdef DBSP_BIT_SLICES_AVX2
  if (cpu_has_avx2()) return add_rows_avx2(rows, count, stride, planes, plane_count, overwrite);
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
#ifdef DBSP_BIT_SLICES_AVX2
  if (cpu_has_avx2()) {
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
  if (cpu_has_avx2()) done = column_counts_avx2(planes, plane_count, stride, columns, out);
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
#ifdef DBSP_BIT_SLICES_AVX2
  // One segment (row totals): whole vectors under a mask, the pieces' words are never split.
  if (pieces.segments() == 1 && stride % 4 == 0 && cpu_has_avx2()) {
    std::vector<uint64_t> mask(stride, 0);
    for (const SegmentPieces::Piece& piece : pieces.pieces) {
      require(piece.word < stride, "segment_sums: piece in word ", piece.word, " past the stride ",
              stride);
      mask[piece.word] |= piece.mask;
    }
    return masked_totals_avx2(planes, plane_count, stride, row_step, rows, mask.data(), out,
                              out_step);
  }
#endif
  segment_sums_any(planes, plane_count, stride, row_step, rows, pieces, out, out_step);
}

}  // namespace dbsp::plan
