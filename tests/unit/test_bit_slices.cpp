// The planner's bit-sliced counting kernels against plain per-column counts, on every build the CPU
// runs (portable, AVX2, AVX-512), for row counts around every tree size (8, 16, 32) and odd widths.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "dbsp/block_layout.hpp"
#include "dbsp/block_mask.hpp"
#include "plan/bit_slices.hpp"
#include "plan/head_set_rows.hpp"
#include "plan/mask_stats.hpp"

namespace {

using dbsp::plan::Simd;

// Random bit rows of `words` words each, read for `stride` words (the padding is random too: it
// must only land in columns nobody reads).
struct Rows {
  int words, stride;
  std::vector<uint64_t> bits;
  Rows(int count, int words_per_row, uint64_t seed)
      : words(words_per_row), stride(dbsp::plan::padded_words(words_per_row)) {
    std::mt19937_64 rng(seed);
    bits.resize(static_cast<size_t>(count) * stride);
    for (uint64_t& w : bits) w = rng() & rng();  // a quarter of the bits set
  }
  const uint64_t* row(int r) const { return bits.data() + static_cast<size_t>(r) * stride; }
  int64_t count(const std::vector<int>& which, int column) const {
    int64_t n = 0;
    for (int r : which) n += (row(r)[column >> 6] >> (column & 63)) & 1;
    return n;
  }
};

class BitSlices : public testing::TestWithParam<Simd> {
 protected:
  void SetUp() override {
    if (!dbsp::plan::simd_available(GetParam())) GTEST_SKIP() << "this CPU lacks the instructions";
    dbsp::plan::limit_simd(GetParam());
  }
  void TearDown() override { dbsp::plan::limit_simd(Simd::avx512); }
};

TEST_P(BitSlices, AddRowsMatchesColumnCountsAroundEveryTreeSize) {
  for (int words : {1, 3, 19}) {
    for (int count : {0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 64, 100, 148}) {
      const Rows rows(count + 5, words, 1000 * words + count);
      std::vector<const uint64_t*> pointers;
      std::vector<int> which;
      for (int r = 0; r < count; ++r) pointers.push_back(rows.row(r)), which.push_back(r);
      // Counters start from garbage (overwrite), then a second batch of five rows is added.
      const int planes = dbsp::plan::planes_for(count + 5);
      std::vector<uint64_t> counters(static_cast<size_t>(planes) * rows.stride, ~uint64_t{0});
      dbsp::plan::add_rows(pointers.data(), count, rows.stride, counters.data(), planes, true);
      for (int j = 0; j < words * 64; ++j) {
        ASSERT_EQ(dbsp::plan::column_count(counters.data(), planes, rows.stride, j),
                  rows.count(which, j))
            << "words " << words << " rows " << count << " column " << j;
      }
      std::vector<const uint64_t*> more;
      for (int r = count; r < count + 5; ++r) more.push_back(rows.row(r)), which.push_back(r);
      dbsp::plan::add_rows(more.data(), 5, rows.stride, counters.data(), planes);
      std::vector<int32_t> columns(words * 64);
      dbsp::plan::column_counts(counters.data(), planes, rows.stride, words * 64, columns.data());
      for (int j = 0; j < words * 64; ++j) ASSERT_EQ(columns[j], rows.count(which, j));
    }
  }
}

TEST_P(BitSlices, SumHeadsMatchesHeadCounts) {
  const int q_blocks = 70, words = 5;
  for (int head_count : {1, 3, 8, 13, 16, 20, 33, 40}) {
    const int heads_total = 41;
    Rows mask(heads_total * q_blocks, words, 7 + head_count);
    // The last three rows come from padded copies (as the statistics read rows near the end);
    // the mask's own words there are poisoned, so reading them shows.
    const std::vector<uint64_t> padded(mask.bits.end() - 3 * mask.stride, mask.bits.end());
    Rows truth = mask;
    std::fill(mask.bits.end() - 3 * mask.stride, mask.bits.end(), ~uint64_t{0});
    dbsp::plan::MaskRows rows;
    rows.bits = mask.bits.data();
    rows.words = mask.stride;  // rows stored at the padded stride
    rows.stride = mask.stride;
    rows.q_blocks = q_blocks;
    rows.padded_from = static_cast<size_t>(heads_total) * q_blocks - 3;
    rows.padded = padded.data();
    std::vector<int> heads;
    for (int x = 0; x < head_count; ++x) heads.push_back((x * 17 + 3) % heads_total);
    const int planes = dbsp::plan::planes_for(head_count);
    const size_t row_step = static_cast<size_t>(planes) * mask.stride;
    const int q_begin = 5, q_end = 69;
    std::vector<uint64_t> out((q_end - q_begin) * row_step, ~uint64_t{0});
    dbsp::plan::sum_heads(rows, heads.data(), head_count, q_begin, q_end, out.data(), planes,
                          row_step);
    for (int i = q_begin; i < q_end; ++i) {
      std::vector<int> which;
      for (int h : heads) which.push_back(h * q_blocks + i);
      const uint64_t* counters = out.data() + (i - q_begin) * row_step;
      for (int j = 0; j < words * 64; ++j) {
        ASSERT_EQ(dbsp::plan::column_count(counters, planes, mask.stride, j), truth.count(which, j))
            << "heads " << head_count << " query block " << i << " column " << j;
      }
    }
  }
}

TEST_P(BitSlices, SegmentSumsMatchColumnCounts) {
  std::mt19937_64 rng(11);
  for (int columns : {1, 63, 64, 300, 1182}) {
    const int stride = dbsp::plan::padded_words((columns + 63) / 64);
    for (int planes : {1, 4, 6, 11}) {
      const int rows = 9;
      const size_t row_step = static_cast<size_t>(planes) * stride + 4;  // rows apart, padded
      std::vector<uint64_t> counts(rows * row_step);
      for (uint64_t& w : counts) w = rng();
      // Contiguous segments, one segment (row totals) and scattered parts.
      std::vector<int> part(columns);
      for (int j = 0; j < columns; ++j) part[j] = static_cast<int>(rng() % 3);
      const std::vector<dbsp::plan::SegmentPieces> layouts = {
          dbsp::plan::SegmentPieces(std::vector<int>{0, columns / 3, columns}),
          dbsp::plan::SegmentPieces(std::vector<int>{0, columns}),
          dbsp::plan::SegmentPieces(std::vector<int>(columns, 0), 1),
          dbsp::plan::SegmentPieces(part, 3)};
      const std::vector<std::vector<int>> part_of = {[&] {
                                                       std::vector<int> p(columns);
                                                       for (int j = 0; j < columns; ++j)
                                                         p[j] = j < columns / 3 ? 0 : 1;
                                                       return p;
                                                     }(),
                                                     std::vector<int>(columns, 0),
                                                     std::vector<int>(columns, 0), part};
      for (size_t l = 0; l < layouts.size(); ++l) {
        const int segments = layouts[l].segments();
        std::vector<int32_t> out(rows * segments, -1);
        dbsp::plan::segment_sums(counts.data(), planes, stride, row_step, rows, layouts[l],
                                 out.data(), segments);
        for (int r = 0; r < rows; ++r) {
          std::vector<int64_t> expected(segments, 0);
          for (int j = 0; j < columns; ++j) {
            expected[part_of[l][j]] +=
                dbsp::plan::column_count(counts.data() + r * row_step, planes, stride, j);
          }
          for (int s = 0; s < segments; ++s) {
            ASSERT_EQ(out[r * segments + s], expected[s])
                << "columns " << columns << " planes " << planes << " layout " << l << " row " << r
                << " segment " << s;
          }
        }
      }
    }
  }
}

// The statistics' counts (blocks per head and segment pair, per head, per key block of a head
// set) against plain counts, on shapes whose segments and rows end inside words, with more ranks
// than query blocks, with rows read from the statistics' padded copies, and with column sums
// too large for the 16-bit conversion.
TEST_P(BitSlices, MaskStatsMatchPlainCounts) {
  struct Shape {
    int heads, q_blocks, k_blocks, ranks;
  };
  for (const Shape& shape : {Shape{3, 37, 101, 5}, Shape{3, 37, 101, 1}, Shape{5, 4, 200, 7},
                             Shape{2, 70, 64, 3}, Shape{1, 1, 1, 2},
                             // All heads' column counts past 16 bits.
                             Shape{40, 1700, 70, 2}}) {
    dbsp::BlockMask mask(shape.heads,
                         dbsp::MaskGeometry::from_blocks(shape.q_blocks, shape.k_blocks));
    std::mt19937_64 rng(shape.heads * 1000 + shape.q_blocks + shape.ranks);
    for (int h = 0; h < shape.heads; ++h)
      for (int i = 0; i < shape.q_blocks; ++i)
        for (int j = 0; j < shape.k_blocks; ++j)
          if (rng() % 3 == 0) mask.set(h, i, j);
    const dbsp::MaskStats stats(mask, shape.ranks);
    const dbsp::MaskStats::Data& d = stats.data();
    const int P = shape.ranks;
    int64_t kept = 0;
    std::vector<int> all_heads;
    std::vector<int64_t> all_columns(shape.k_blocks, 0);
    for (int h = 0; h < shape.heads; ++h) {
      all_heads.push_back(h);
      std::vector<int64_t> blocks(static_cast<size_t>(P) * P, 0), columns(shape.k_blocks, 0);
      int64_t head_kept = 0;
      for (int i = 0; i < shape.q_blocks; ++i) {
        for (int j = 0; j < shape.k_blocks; ++j) {
          if (!mask.get(h, i, j)) continue;
          int s = 0, p = 0;
          while (dbsp::shard_begin(s + 1, shape.q_blocks, P) <= i) ++s;
          while (dbsp::shard_begin(p + 1, shape.k_blocks, P) <= j) ++p;
          ++blocks[static_cast<size_t>(s) * P + p], ++columns[j], ++head_kept;
        }
      }
      for (int x = 0; x < P * P; ++x) ASSERT_EQ(d.blocks(h)[x], blocks[x]) << "head " << h;
      ASSERT_EQ(stats.kept_per_head()[h], head_kept) << "head " << h;
      const std::vector<double> column = dbsp::plan::column_mass(d, std::vector<int>{h});
      for (int j = 0; j < shape.k_blocks; ++j) {
        ASSERT_EQ(column[j], double(columns[j])) << "head " << h << " key block " << j;
        all_columns[j] += columns[j];
      }
      kept += head_kept;
    }
    ASSERT_EQ(stats.kept(), kept);
    const std::vector<double> column = dbsp::plan::column_mass(d, all_heads);
    for (int j = 0; j < shape.k_blocks; ++j)
      ASSERT_EQ(column[j], double(all_columns[j])) << "all heads, key block " << j;
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, BitSlices,
                         testing::Values(Simd::portable, Simd::avx2, Simd::avx512),
                         [](const testing::TestParamInfo<Simd>& path) {
                           switch (path.param) {
                             case Simd::portable:
                               return "Portable";
                             case Simd::avx2:
                               return "Avx2";
                             case Simd::avx512:
                               return "Avx512";
                           }
                           return "?";
                         });

}  // namespace
