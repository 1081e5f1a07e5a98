// Block masks against a plain bool-array reference, their CSR form, slices, block layouts and the
// contiguous home split of blocks over shards.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "dbsp/block_layout.hpp"
#include "dbsp/block_mask.hpp"
#include "dbsp/error.hpp"

namespace dbsp {
namespace {

// A random mask with its reference copy, [heads][q_blocks][k_blocks] as plain bytes.
struct RandomMask {
  BlockMask mask;
  std::vector<uint8_t> reference;
};

RandomMask random_mask(int heads, MaskGeometry geometry, double density, uint32_t seed) {
  std::mt19937 rng(seed);
  std::bernoulli_distribution keep(density);
  RandomMask out{BlockMask(heads, geometry), {}};
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < geometry.q_blocks(); ++i) {
      for (int j = 0; j < geometry.k_blocks(); ++j) {
        const bool bit = keep(rng);
        out.reference.push_back(bit);
        if (bit) out.mask.set(h, i, j);
      }
    }
  }
  return out;
}

TEST(BlockMask, GetSetAndCountsMatchReference) {
  // 130 key blocks: two full words and a partial third; a short last block on both axes.
  const MaskGeometry geometry{333, 130 * 64 - 5, 64, 64};
  const int heads = 3;
  auto [mask, reference] = random_mask(heads, geometry, 0.3, 1);
  ASSERT_EQ(mask.q_blocks(), 6);
  ASSERT_EQ(mask.k_blocks(), 130);
  ASSERT_EQ(mask.words_per_row(), 3);
  int64_t total = 0;
  size_t flat = 0;
  for (int h = 0; h < heads; ++h) {
    int64_t head_total = 0;
    for (int i = 0; i < mask.q_blocks(); ++i) {
      int row_total = 0;
      for (int j = 0; j < mask.k_blocks(); ++j, ++flat) {
        EXPECT_EQ(mask.get(h, i, j), reference[flat] != 0) << h << " " << i << " " << j;
        row_total += reference[flat];
      }
      EXPECT_EQ(mask.row_kept(h, i), row_total);
      head_total += row_total;
    }
    EXPECT_EQ(mask.kept(h), head_total);
    EXPECT_EQ(mask.kept_per_head()[h], head_total);
    EXPECT_DOUBLE_EQ(mask.density(h), double(head_total) / (6 * 130));
    total += head_total;
  }
  EXPECT_EQ(mask.kept(), total);
  EXPECT_DOUBLE_EQ(mask.density(), double(total) / (heads * 6 * 130));
}

TEST(BlockMask, SetFalseClearsOnlyThatBit) {
  BlockMask mask(2, MaskGeometry::from_blocks(3, 70), true);
  mask.set(1, 2, 64, false);
  EXPECT_FALSE(mask.get(1, 2, 64));
  EXPECT_TRUE(mask.get(1, 2, 63));
  EXPECT_TRUE(mask.get(1, 2, 65));
  EXPECT_TRUE(mask.get(0, 2, 64));
  EXPECT_EQ(mask.kept(), 2 * 3 * 70 - 1);
}

TEST(BlockMask, FillKeepsTailBitsZeroWhenKeyBlocksAreNotAMultipleOf64) {
  for (int k_blocks : {1, 63, 64, 65, 127, 128, 130}) {
    const BlockMask mask(2, MaskGeometry::from_blocks(3, k_blocks), true);
    EXPECT_EQ(mask.kept(), int64_t{2} * 3 * k_blocks) << k_blocks;
    EXPECT_DOUBLE_EQ(mask.density(), 1.0);
    for (int h = 0; h < 2; ++h) {
      for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(mask.row_kept(h, i), k_blocks);
        const uint64_t last = mask.row_bits(h, i)[mask.words_per_row() - 1];
        if (k_blocks % 64) {
          EXPECT_EQ(last >> (k_blocks % 64), 0u) << k_blocks;
        }
      }
    }
  }
}

TEST(BlockMask, TokenDensityCountsShortLastBlocksAtTheirSize) {
  // 100 queries = 64 + 36, 70 keys = 64 + 6; keep only the two short corner blocks.
  BlockMask mask(1, MaskGeometry{100, 70, 64, 64});
  mask.set(0, 1, 1);
  EXPECT_DOUBLE_EQ(mask.density(), 0.25);
  EXPECT_DOUBLE_EQ(mask.token_density(), 36.0 * 6 / (100.0 * 70));
  EXPECT_DOUBLE_EQ(BlockMask(2, MaskGeometry{100, 70, 64, 64}, true).token_density(), 1.0);
}

TEST(BlockMask, CsrRoundTripKeepsEveryRowIncludingEmptyOnes) {
  const MaskGeometry geometry{5 * 64 + 1, 67 * 64 + 3, 64, 64};
  auto [mask, reference] = random_mask(4, geometry, 0.1, 2);
  // Make whole rows empty and full.
  for (int j = 0; j < mask.k_blocks(); ++j) mask.set(1, 2, j, false);
  for (int j = 0; j < mask.k_blocks(); ++j) mask.set(2, 3, j, true);
  const BlockCsr csr = mask.to_csr();
  ASSERT_EQ(csr.row_offset.size(), size_t(4 * 6 + 1));
  EXPECT_EQ(csr.row_offset.front(), 0);
  EXPECT_EQ(csr.row_offset.back(), mask.kept());
  EXPECT_EQ(csr.row(1, 2).size(), 0u);
  EXPECT_EQ(csr.row(2, 3).size(), size_t(mask.k_blocks()));
  for (int h = 0; h < 4; ++h) {
    for (int i = 0; i < 6; ++i) {
      const auto row = csr.row(h, i);
      EXPECT_EQ(csr.kv_count[h * 6 + i], mask.row_kept(h, i));
      std::vector<int32_t> expected;
      for (int j = 0; j < mask.k_blocks(); ++j) {
        if (mask.get(h, i, j)) expected.push_back(j);
      }
      EXPECT_EQ(std::vector<int32_t>(row.begin(), row.end()), expected);
    }
  }
  EXPECT_EQ(BlockMask::from_csr(csr, geometry), mask);
}

TEST(BlockMask, FromCsrRejectsOutOfRangeKeyBlocksAndWrongGeometry) {
  BlockMask mask(1, MaskGeometry::from_blocks(2, 3), true);
  BlockCsr csr = mask.to_csr();
  EXPECT_THROW(BlockMask::from_csr(csr, MaskGeometry::from_blocks(2, 4)), Error);
  csr.kv_index.back() = 3;
  EXPECT_THROW(BlockMask::from_csr(csr, MaskGeometry::from_blocks(2, 3)), Error);
}

TEST(BlockMask, SliceTakesHeadsAndBlocksInTheGivenOrder) {
  const MaskGeometry geometry{7 * 64, 9 * 64 - 10, 64, 64};
  auto [mask, reference] = random_mask(5, geometry, 0.4, 3);
  const std::vector<int> heads{4, 0, 2};
  const std::vector<int> q_blocks{6, 1, 3, 0};
  const std::vector<int> k_blocks{8, 2, 5};
  const BlockMask slice = mask.slice(heads, q_blocks, k_blocks);
  EXPECT_EQ(slice.heads(), 3);
  EXPECT_EQ(slice.geometry(), MaskGeometry::from_blocks(4, 3));
  for (size_t h = 0; h < heads.size(); ++h) {
    for (size_t i = 0; i < q_blocks.size(); ++i) {
      for (size_t j = 0; j < k_blocks.size(); ++j) {
        EXPECT_EQ(slice.get(int(h), int(i), int(j)), mask.get(heads[h], q_blocks[i], k_blocks[j]));
      }
    }
  }
  const std::vector<int> bad{9};
  EXPECT_THROW(mask.slice(heads, q_blocks, bad), Error);
  EXPECT_THROW(mask.slice(bad, q_blocks, k_blocks), Error);
}

TEST(BlockMask, RejectsNegativeHeadsAndNonPositiveBlocks) {
  EXPECT_THROW(BlockMask(-1, MaskGeometry::from_blocks(1, 1)), Error);
  EXPECT_THROW(BlockMask(1, MaskGeometry{64, 64, 0, 64}), Error);
  EXPECT_THROW(BlockMask(1, MaskGeometry{-1, 64, 64, 64}), Error);
}

TEST(BlockLayout, UniformHasAShortLastBlock) {
  const BlockLayout layout = BlockLayout::uniform(130, 64);
  EXPECT_EQ(layout.start, (std::vector<int64_t>{0, 64, 128, 130}));
  EXPECT_EQ(layout.blocks(), 3);
  EXPECT_EQ(layout.size(2), 2);
  EXPECT_EQ(layout.tokens(), 130);
  EXPECT_EQ(BlockLayout::uniform(128, 64).blocks(), 2);
  EXPECT_EQ(BlockLayout::uniform(0, 64).blocks(), 0);
  EXPECT_THROW(BlockLayout::uniform(10, 0), Error);
  EXPECT_THROW(BlockLayout::uniform(-1, 64), Error);
}

TEST(BlockLayout, GatherConcatenatesBlocksInOrder) {
  const BlockLayout base = BlockLayout::uniform(130, 64);
  const BlockLayout gathered = BlockLayout::gather(base, {2, 0, 1});
  EXPECT_EQ(gathered.start, (std::vector<int64_t>{0, 2, 66, 130}));
  EXPECT_EQ(BlockLayout::gather(base, {}).blocks(), 0);
  EXPECT_THROW(BlockLayout::gather(base, {3}), Error);
  EXPECT_THROW(BlockLayout::gather(base, {-1}), Error);
}

TEST(HomeShard, ContiguousSplitIsBalancedAndOwnsEveryBlockOnce) {
  for (int blocks = 1; blocks <= 70; ++blocks) {
    for (int parts = 1; parts <= 80; ++parts) {  // includes parts > blocks (empty shards)
      EXPECT_EQ(shard_begin(0, blocks, parts), 0);
      EXPECT_EQ(shard_begin(parts, blocks, parts), blocks);
      // Sizes differ by at most one (they need not be monotone: 7 blocks over 5 shards give
      // 1, 1, 2, 1, 2), and the first shard is never larger than the last.
      for (int r = 0; r < parts; ++r) {
        const int size = shard_begin(r + 1, blocks, parts) - shard_begin(r, blocks, parts);
        EXPECT_LE(size, (blocks + parts - 1) / parts) << blocks << "/" << parts << " shard " << r;
        EXPECT_GE(size, blocks / parts) << blocks << "/" << parts << " shard " << r;
      }
      EXPECT_LE(shard_begin(1, blocks, parts), blocks - shard_begin(parts - 1, blocks, parts));
      for (int b = 0; b < blocks; ++b) {
        const int r = home_shard(b, blocks, parts);
        ASSERT_GE(r, 0);
        ASSERT_LT(r, parts);
        EXPECT_LE(shard_begin(r, blocks, parts), b) << blocks << "/" << parts << " block " << b;
        EXPECT_LT(b, shard_begin(r + 1, blocks, parts)) << blocks << "/" << parts << " block " << b;
      }
    }
  }
}

TEST(HomeShard, LargeCountsDoNotOverflow) {
  const int blocks = 2'000'000'000;
  const int parts = 7;
  for (int r = 0; r <= parts; ++r) {
    const int begin = shard_begin(r, blocks, parts);
    if (r < parts) {
      EXPECT_EQ(home_shard(begin, blocks, parts), r);
    }
    if (r > 0) {
      EXPECT_EQ(home_shard(begin - 1, blocks, parts), r - 1);
    }
  }
}

}  // namespace
}  // namespace dbsp
