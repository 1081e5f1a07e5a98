// The bit-sliced adder's kernels as templates over the vector width N (words per vector), shared
// by the translation units that compile them for different instruction sets: bit_slices.cpp
// (portable and AVX2) and bit_slices_avx512.cpp (AVX-512, where the carry-save adder is two
// ternary-logic instructions instead of five). Internal linkage on purpose: each includer gets its
// own copies, built for its own target, so the linker can never merge an AVX-512 build of them
// into code that runs on a CPU without it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "plan/bit_slices.hpp"

#if DBSP_BIT_SLICES_TERNARY
#include <immintrin.h>
#endif

namespace dbsp::plan {
namespace {  // NOLINT(google-build-namespaces, cert-dcl59-cpp): see the file comment

// (Not std::min: a standard template instantiated here could be merged across files, see above.)
template <class T>
[[gnu::always_inline]] inline T smaller(T a, T b) {
  return b < a ? b : a;
}
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
#if DBSP_BIT_SLICES_TERNARY
  if constexpr (N == 4) {  // majority (0xe8) and three-way xor (0x96), one instruction each
    const auto x = reinterpret_cast<__m256i>(a), y = reinterpret_cast<__m256i>(b),
               z = reinterpret_cast<__m256i>(c);
    high = reinterpret_cast<Lanes<N>>(_mm256_ternarylogic_epi64(x, y, z, 0xe8));
    low = reinterpret_cast<Lanes<N>>(_mm256_ternarylogic_epi64(x, y, z, 0x96));
    return;
  }
#endif
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
    const int group = smaller(kGroup, count - first);
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
    const size_t end = smaller(static_cast<size_t>(q_end), first + kBlockRows);
    for (int batch = 0; batch < head_count; batch += kBatchHeads) {
      const int count = smaller(kBatchHeads, head_count - batch);
      // Query blocks below plain_end have every row of the batch in the mask itself: rows are
      // read at the heads' first rows plus i * words, with no pointers to build per block.
      size_t plain_end = end;
      for (int x = 0; x < count; ++x) {
        const size_t head_first = static_cast<size_t>(heads[batch + x]) * q_blocks;
        bases[x] = bits + head_first * words;
        plain_end = smaller(plain_end, padded_from > head_first ? padded_from - head_first : 0);
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
}  // namespace
}  // namespace dbsp::plan
