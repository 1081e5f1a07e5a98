// Fine masks: constructor validation, counts and density, and the conversions to and from block
// masks on odd sizes (short last key block, empty and full rows).
#include <gtest/gtest.h>

#include <random>
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

}  // namespace
}  // namespace dbsp
