// Bit-sliced per-column counts of many bit rows: plane k holds bit k of every column's count, so a
// count over a column range is a weighted sum of popcounts and no per-column integers are built
// unless asked for. The planner sums mask rows this way, once over query blocks (column counts
// per head) and once over heads (per query block, the head counts of a head group).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace dbsp::plan {

// Counter planes are `stride` words apart, a multiple of kStrideWords: the kernels count whole
// vectors, so every row they read must be readable (not necessarily meaningful) up to the stride.
constexpr int kStrideWords = 4;
inline int padded_words(int words) {
  return (words + kStrideWords - 1) / kStrideWords * kStrideWords;
}

// Planes needed to hold counts up to `max_count`.
inline int planes_for(int64_t max_count) {
  return max_count <= 0 ? 1 : static_cast<int>(std::bit_width(static_cast<uint64_t>(max_count)));
}

// The bit rows of a head-major mask ([heads][q_blocks] rows, `words` apart), each readable for
// `stride` words: rows whose padded read would run past the mask come from padded copies.
struct MaskRows {
  const uint64_t* bits = nullptr;
  int words = 0;
  int stride = 0;
  int q_blocks = 0;
  size_t padded_from = 0;  // first row (head * q_blocks + q_block) read from `padded`
  const uint64_t* padded = nullptr;

  const uint64_t* row(int head, int q_block) const {
    const size_t at = static_cast<size_t>(head) * q_blocks + q_block;
    return at < padded_from ? bits + at * words : padded + (at - padded_from) * stride;
  }
};

// The instruction sets the kernels are built for, narrowest first. The widest one the CPU runs is
// used; tests narrow it to compare every build against the portable one.
enum class Simd { portable, avx2, avx512 };
void limit_simd(Simd widest);
bool simd_available(Simd level);

// Adds `count` bit rows to bit-sliced counters: planes[k * stride + w] holds bit k of the counts
// of the 64 columns of word w. The counters must have room for the sums (`plane_count` planes);
// words past a row's end are counted into columns nobody reads. `overwrite`: the counters start
// from zero (their old contents are ignored).
void add_rows(const uint64_t* const* rows, int count, int stride, uint64_t* planes, int plane_count,
              bool overwrite = false);

// Per query block i in [q_begin, q_end), the counts of the rows (heads[x], i) over x, written
// (not added) to the counters at out + (i - q_begin) * row_step.
void sum_heads(const MaskRows& rows, const int* heads, int head_count, int q_begin, int q_end,
               uint64_t* out, int plane_count, size_t row_step);

// Adds bit-sliced counts `from` (from_planes planes) to `to` (to_planes planes, enough for the
// sum).
void add_counts(const uint64_t* from, int from_planes, uint64_t* to, int to_planes, int stride);

// Count of one column.
inline int64_t column_count(const uint64_t* planes, int plane_count, int stride, int column) {
  int64_t value = 0;
  const int w = column >> 6, b = column & 63;
  for (int k = 0; k < plane_count; ++k)
    value += static_cast<int64_t>((planes[static_cast<size_t>(k) * stride + w] >> b) & 1) << k;
  return value;
}

// Counts of all columns [0, columns) into out. Uses AVX2 when the CPU has it.
void column_counts(const uint64_t* planes, int plane_count, int stride, int columns, int32_t* out);

// Sum of the counts of the columns selected by `mask` (one word per counter word).
inline int64_t masked_sum(const uint64_t* planes, int plane_count, int stride, int word,
                          uint64_t mask) {
  int64_t value = 0;
  for (int k = 0; k < plane_count; ++k)
    value +=
        static_cast<int64_t>(std::popcount(planes[static_cast<size_t>(k) * stride + word] & mask))
        << k;
  return value;
}

// Column ranges cut into (word, mask) pieces, for sums over contiguous column segments.
struct SegmentPieces {
  struct Piece {
    int word;
    uint64_t mask;
  };
  std::vector<int> first;  // [segments + 1]: pieces of segment s are [first[s], first[s + 1])
  std::vector<Piece> pieces;

  // Segments [bounds[s], bounds[s + 1]).
  explicit SegmentPieces(const std::vector<int>& bounds);
  // Segment part[j] holds column j (part[j] in [0, parts)).
  SegmentPieces(const std::vector<int>& part, int parts);
  int segments() const { return static_cast<int>(first.size()) - 1; }
};

// For `rows` counters `row_step` words apart: per segment, the sum of the counts of its columns,
// out[r * out_step + s].
void segment_sums(const uint64_t* planes, int plane_count, int stride, size_t row_step, int rows,
                  const SegmentPieces& pieces, int32_t* out, size_t out_step);

// Per segment, the sum of the counts of its columns: out[s] (out has pieces.segments() entries).
void segment_sums(const uint64_t* planes, int plane_count, int stride, const SegmentPieces& pieces,
                  int64_t* out);

}  // namespace dbsp::plan
