// Fine masks: constructor validation, counts and density, the conversions to and from block
// masks on odd sizes (short last key block, empty and full rows), and seeded thinning.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "dbsp/error.hpp"
#include "dbsp/fine_mask.hpp"

namespace dbsp {
namespace {

// 2 heads x 2 query blocks over 150 keys (blocks of 64: the last holds 22 keys).
const MaskGeometry kGeometry{100, 150, 64, 64};

FineMask small_mask() {
  // Rows: (0,0) {0, 5, 149}; (0,1) {}; (1,0) {64}; (1,1) {1, 2, 3}.
  return FineMask(2, kGeometry, {0, 3, 3, 4, 7}, {0, 5, 149, 64, 1, 2, 3});
}

std::vector<int32_t> as_vector(std::span<const int32_t> keys) { return {keys.begin(), keys.end()}; }

TEST(FineMask, KeysAndCountsFollowTheRowOffsets) {
  const FineMask mask = small_mask();
  EXPECT_EQ(mask.heads(), 2);
  EXPECT_EQ(mask.q_blocks(), 2);
  EXPECT_EQ(as_vector(mask.keys(0, 0)), (std::vector<int32_t>{0, 5, 149}));
  EXPECT_TRUE(mask.keys(0, 1).empty());
  EXPECT_EQ(as_vector(mask.keys(1, 0)), (std::vector<int32_t>{64}));
  EXPECT_EQ(as_vector(mask.keys(1, 1)), (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(mask.kept(), 7);
  EXPECT_EQ(mask.kept(0), 3);
  EXPECT_EQ(mask.kept(1), 4);
  EXPECT_DOUBLE_EQ(mask.density(), 7.0 / (2 * 2 * 150));
  EXPECT_THROW(mask.keys(2, 0), Error);
  EXPECT_THROW(mask.keys(0, 2), Error);
  EXPECT_THROW(mask.kept(-1), Error);
}

TEST(FineMask, DefaultIsEmpty) {
  const FineMask mask;
  EXPECT_EQ(mask.kept(), 0);
  EXPECT_EQ(mask.density(), 0.0);
  EXPECT_EQ(mask.covering_blocks().kept(), 0);
}

TEST(FineMask, ConstructorRejectsInconsistentLists) {
  const auto make = [](std::vector<int64_t> offsets, std::vector<int32_t> keys) {
    return FineMask(2, kGeometry, std::move(offsets), std::move(keys));
  };
  EXPECT_NO_THROW(make({0, 0, 0, 0, 1}, {149}));
  EXPECT_THROW(make({0, 0, 0, 1}, {1}), Error);        // too few offsets
  EXPECT_THROW(make({0, 0, 0, 0, 0, 1}, {1}), Error);  // too many offsets
  EXPECT_THROW(make({1, 1, 1, 1, 1}, {1}), Error);     // does not start at 0
  EXPECT_THROW(make({0, 2, 1, 2, 2}, {1, 2}), Error);  // decreasing
  EXPECT_THROW(make({0, 0, 0, 0, 1}, {1, 2}), Error);  // does not end at the key count
  EXPECT_THROW(make({0, 0, 0, 0, 1}, {150}), Error);   // key == seq_k
  EXPECT_THROW(make({0, 0, 0, 0, 1}, {-1}), Error);    // negative key
  EXPECT_THROW(make({0, 2, 2, 2, 2}, {5, 4}), Error);  // unsorted
  EXPECT_THROW(make({0, 2, 2, 2, 2}, {4, 4}), Error);  // duplicate
  EXPECT_NO_THROW(make({0, 1, 2, 2, 2}, {5, 4}));      // order only matters inside a row
  EXPECT_THROW(FineMask(-1, kGeometry, {0}, {}), Error);
  EXPECT_THROW(FineMask(1, MaskGeometry{64, 64, 64, 0}, {0, 0}, {}), Error);
  try {
    make({0, 2, 2, 2, 2}, {5, 4});
    FAIL() << "unsorted keys accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sorted"), std::string::npos) << e.what();
  }
}

TEST(FineMask, FromBlockKeepsEveryKeyOfEveryKeptBlock) {
  BlockMask blocks(2, kGeometry);
  blocks.set(0, 0, 2);  // the short last block: keys 128..149
  blocks.set(0, 0, 0);
  blocks.set(1, 1, 1);
  const FineMask fine = FineMask::from_block(blocks);
  std::vector<int32_t> expected;
  for (int k = 0; k < 64; ++k) expected.push_back(k);
  for (int k = 128; k < 150; ++k) expected.push_back(k);
  EXPECT_EQ(as_vector(fine.keys(0, 0)), expected);
  EXPECT_TRUE(fine.keys(0, 1).empty());
  EXPECT_TRUE(fine.keys(1, 0).empty());
  EXPECT_EQ(fine.keys(1, 1).size(), 64u);
  EXPECT_EQ(fine.keys(1, 1).front(), 64);
  EXPECT_EQ(fine.kept(), 64 + 22 + 64);
  EXPECT_EQ(fine.geometry(), kGeometry);
  EXPECT_DOUBLE_EQ(FineMask::from_block(BlockMask(3, kGeometry, true)).density(), 1.0);
}

TEST(FineMask, CoveringBlocksOfFromBlockIsTheOriginalMask) {
  const MaskGeometry geometry{5 * 32 + 7, 11 * 16 + 3, 32, 16};
  std::mt19937 rng(7);
  std::bernoulli_distribution keep(0.3);
  BlockMask blocks(3, geometry);
  for (int h = 0; h < 3; ++h) {
    for (int i = 0; i < blocks.q_blocks(); ++i) {
      for (int j = 0; j < blocks.k_blocks(); ++j) blocks.set(h, i, j, keep(rng));
    }
  }
  EXPECT_EQ(FineMask::from_block(blocks).covering_blocks(), blocks);
}

TEST(FineMask, CoveringBlocksMarksEveryBlockHoldingAKeptKey) {
  const MaskGeometry geometry{3 * 64, 1000, 64, 64};
  std::mt19937 rng(11);
  std::bernoulli_distribution keep(0.01);
  std::vector<int64_t> offsets{0};
  std::vector<int32_t> keys;
  BlockMask expected(2, geometry);
  for (int h = 0; h < 2; ++h) {
    for (int i = 0; i < 3; ++i) {
      for (int k = 0; k < 1000; ++k) {
        if (!keep(rng)) continue;
        keys.push_back(k);
        expected.set(h, i, k / 64);
      }
      offsets.push_back(static_cast<int64_t>(keys.size()));
    }
  }
  const FineMask fine(2, geometry, offsets, keys);
  EXPECT_EQ(fine.covering_blocks(), expected);
  EXPECT_EQ(fine.kept(), static_cast<int64_t>(keys.size()));
}

// A random block mask over a short last key block, with empty rows.
BlockMask random_blocks(int heads, MaskGeometry geometry, double density, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution keep(density);
  BlockMask blocks(heads, geometry);
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < blocks.q_blocks(); ++i) {
      for (int j = 0; j < blocks.k_blocks(); ++j) blocks.set(h, i, j, keep(rng));
    }
  }
  return blocks;
}

// The keys of `fine` row (h, i) that fall in key block j.
std::vector<int32_t> keys_in_block(const FineMask& fine, int h, int i, int j) {
  std::vector<int32_t> out;
  const int block_k = fine.geometry().block_k;
  for (int32_t key : fine.keys(h, i)) {
    if (key / block_k == j) out.push_back(key);
  }
  return out;
}

TEST(ThinBlocks, KeepsAboutTheShareOfEveryKeptBlockAndCoversTheMask) {
  const MaskGeometry geometry{7 * 32 + 5, 13 * 16 + 3, 32, 16};  // last key block: 3 keys
  const BlockMask blocks = random_blocks(3, geometry, 0.4, 3);
  for (double keep : {0.3, 0.5, 0.9, 1e-6}) {
    const FineMask fine = thin_blocks(blocks, keep, 17);
    EXPECT_EQ(fine.geometry(), geometry);
    EXPECT_EQ(fine.covering_blocks(), blocks) << keep;
    int64_t expected_kept = 0;
    for (int h = 0; h < 3; ++h) {
      for (int i = 0; i < blocks.q_blocks(); ++i) {
        for (int j = 0; j < blocks.k_blocks(); ++j) {
          const int64_t size = std::min<int64_t>(16, geometry.seq_k - j * 16);
          const int64_t want =
              blocks.get(h, i, j) ? std::clamp<int64_t>(std::llround(keep * size), 1, size) : 0;
          EXPECT_EQ(static_cast<int64_t>(keys_in_block(fine, h, i, j).size()), want)
              << "keep " << keep << " (" << h << ", " << i << ", " << j << ")";
          expected_kept += want;
        }
      }
    }
    EXPECT_EQ(fine.kept(), expected_kept);
  }
  // A tiny share keeps one key per kept block.
  EXPECT_EQ(thin_blocks(blocks, 1e-6, 17).kept(), blocks.kept());
}

TEST(ThinBlocks, IsDeterministicPerBlockAndChangesWithTheSeed) {
  const MaskGeometry geometry{5 * 64 + 1, 9 * 64 + 40, 64, 64};
  BlockMask blocks = random_blocks(2, geometry, 0.3, 8);
  blocks.set(1, 2, 4, false);
  const FineMask fine = thin_blocks(blocks, 0.25, 99);
  EXPECT_EQ(thin_blocks(blocks, 0.25, 99), fine);
  EXPECT_NE(thin_blocks(blocks, 0.25, 100), fine);
  // A block's keys depend on (seed, head, query block, key block) only, not on its neighbours.
  BlockMask more = blocks;
  more.set(1, 2, 4);
  const FineMask fine_more = thin_blocks(more, 0.25, 99);
  for (int j = 0; j < blocks.k_blocks(); ++j) {
    if (j == 4) continue;
    EXPECT_EQ(keys_in_block(fine_more, 1, 2, j), keys_in_block(fine, 1, 2, j)) << j;
  }
  EXPECT_EQ(keys_in_block(fine_more, 1, 2, 4).size(), 16u);
  // Blocks draw different subsets: the offsets kept differ between blocks.
  std::set<std::vector<int32_t>> patterns;
  for (int h = 0; h < 2; ++h) {
    for (int i = 0; i < blocks.q_blocks(); ++i) {
      for (int j = 0; j + 1 < blocks.k_blocks(); ++j) {
        std::vector<int32_t> offsets = keys_in_block(fine, h, i, j);
        for (int32_t& key : offsets) key -= j * 64;
        if (!offsets.empty()) patterns.insert(offsets);
      }
    }
  }
  EXPECT_GT(patterns.size(), 10u);
}

TEST(ThinBlocks, KeepOneIsFromBlockAndBadSharesAreRejected) {
  const MaskGeometry geometry{3 * 64, 2 * 64 + 9, 64, 64};
  const BlockMask blocks = random_blocks(2, geometry, 0.5, 4);
  EXPECT_EQ(thin_blocks(blocks, 1.0, 5), FineMask::from_block(blocks));
  EXPECT_EQ(thin_blocks(BlockMask(2, geometry), 0.3, 5).kept(), 0);
  for (double keep : {0.0, -0.1, 1.5, std::nan("")}) {
    EXPECT_THROW(thin_blocks(blocks, keep, 5), Error) << keep;
  }
}

}  // namespace
}  // namespace dbsp
