// Fine masks: constructor validation (on threads for large masks), counts and density, the
// covering blocks, the conversions to and from block masks on odd sizes (short last key block,
// empty and full rows), and seeded thinning.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
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

// The covering blocks come out of the constructor's validation pass: on every row, with block
// sizes that are and are not powers of two, wider than 64 keys, and a short last block; and on
// enough keys for the pass to run on threads.
TEST(FineMask, CoveringBlocksAreFoundForAnyBlockSize) {
  for (const int block_k : {1, 7, 16, 48, 64, 130}) {
    const MaskGeometry geometry{5 * 16 + 3, 40 * block_k + block_k / 2 + 1, 16, block_k};
    std::mt19937 rng(block_k);
    std::vector<int64_t> offsets{0};
    std::vector<int32_t> keys;
    BlockMask expected(3, geometry);
    for (int r = 0; r < 3 * geometry.q_blocks(); ++r) {
      // Rows of every kind: empty, dense, sparse, a few runs.
      const double keep = std::array{0.0, 0.9, 0.02, 0.3}[r % 4];
      std::bernoulli_distribution take(keep);
      for (int64_t k = 0; k < geometry.seq_k; ++k) {
        if (!take(rng)) continue;
        keys.push_back(static_cast<int32_t>(k));
        expected.set(r / geometry.q_blocks(), r % geometry.q_blocks(),
                     static_cast<int>(k / block_k));
      }
      offsets.push_back(static_cast<int64_t>(keys.size()));
    }
    const FineMask fine(3, geometry, offsets, keys);
    EXPECT_EQ(fine.covering_blocks(), expected) << "block_k " << block_k;
  }
}

// Large masks are validated on threads; the error still names the first bad row and its key.
TEST(FineMask, ConstructorNamesTheFirstBadRowOfALargeMask) {
  const MaskGeometry geometry{64 * 64, 4000, 64, 64};
  std::vector<int64_t> offsets{0};
  std::vector<int32_t> keys;
  for (int r = 0; r < 4 * 64; ++r) {
    for (int k = r % 3; k < 4000; k += 3) keys.push_back(k);  // > 2^16 keys in all
    offsets.push_back(static_cast<int64_t>(keys.size()));
  }
  ASSERT_GT(keys.size(), size_t{1} << 16);
  EXPECT_NO_THROW(FineMask(4, geometry, offsets, keys));
  std::vector<int32_t> bad = keys;
  bad[offsets[200] + 5] = bad[offsets[200] + 4];  // row 200: a duplicate
  bad[offsets[77] + 9] = 4000;                    // row 77: outside [0, seq_k)
  try {
    FineMask(4, geometry, offsets, bad);
    FAIL() << "bad keys accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 77 "), std::string::npos) << e.what();
  }
  bad = keys;
  bad[offsets[200] + 5] = bad[offsets[200] + 4];
  try {
    FineMask(4, geometry, offsets, bad);
    FAIL() << "a duplicate key accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 200 must be sorted"), std::string::npos) << e.what();
  }
}

// from_block and thin_blocks hand their block mask over as the covering blocks instead of
// finding them in the keys: the same mask as the public constructor builds from their lists.
TEST(FineMask, ConvertedMasksEqualTheConstructorsOnTheirLists) {
  const MaskGeometry geometry{7 * 32 + 5, 13 * 16 + 3, 32, 16};
  BlockMask blocks(3, geometry);
  std::mt19937 rng(5);
  std::bernoulli_distribution keep(0.35);
  for (int h = 0; h < 3; ++h) {
    for (int i = 0; i < blocks.q_blocks(); ++i) {
      for (int j = 0; j < blocks.k_blocks(); ++j) blocks.set(h, i, j, keep(rng));
    }
  }
  for (const FineMask& converted :
       {FineMask::from_block(blocks), thin_blocks(blocks, 0.3, 1), thin_blocks(blocks, 1e-6, 2)}) {
    const FineMask rebuilt(converted.heads(), converted.geometry(), converted.row_offset(),
                           converted.key_index());
    EXPECT_EQ(rebuilt, converted);
    EXPECT_EQ(rebuilt.covering_blocks(), blocks);
  }
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

// thin_blocks as first written (a division per draw, a sort per block): the keys every release
// since must keep, so that seeded runs stay comparable.
FineMask thin_blocks_reference(const BlockMask& mask, double keep, uint64_t seed) {
  auto splitmix = [](uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  };
  const MaskGeometry& geometry = mask.geometry();
  const int64_t block_k = geometry.block_k;
  std::vector<int64_t> offsets{0};
  std::vector<int32_t> keys;
  for (int h = 0; h < mask.heads(); ++h) {
    for (int i = 0; i < mask.q_blocks(); ++i) {
      for (int j = 0; j < mask.k_blocks(); ++j) {
        if (!mask.get(h, i, j)) continue;
        const int64_t size = std::min(geometry.seq_k, (j + 1) * block_k) - j * block_k;
        const int64_t count =
            std::clamp<int64_t>(std::llround(keep * static_cast<double>(size)), 1, size);
        std::vector<int32_t> block(static_cast<size_t>(size));
        for (int64_t n = 0; n < size; ++n) block[n] = static_cast<int32_t>(n);
        uint64_t state = splitmix(seed ^ splitmix(static_cast<uint64_t>(h) ^
                                                  splitmix(static_cast<uint64_t>(i) ^
                                                           splitmix(static_cast<uint64_t>(j)))));
        for (int64_t n = 0; n < count; ++n) {
          state = splitmix(state);
          std::swap(block[n], block[n + static_cast<int64_t>(state % uint64_t(size - n))]);
        }
        std::sort(block.begin(), block.begin() + count);
        for (int64_t n = 0; n < count; ++n) {
          keys.push_back(static_cast<int32_t>(j * block_k + block[n]));
        }
      }
      offsets.push_back(static_cast<int64_t>(keys.size()));
    }
  }
  return FineMask(mask.heads(), geometry, offsets, keys);
}

TEST(ThinBlocks, KeepsTheKeysOfTheFirstImplementation) {
  for (const int block_k : {16, 64, 100, 200}) {
    const MaskGeometry geometry{6 * 32 + 7, 11 * block_k + block_k / 3, 32, block_k};
    const BlockMask blocks = random_blocks(3, geometry, 0.4, block_k);
    for (double keep : {0.3, 0.77, 1e-6}) {
      for (uint64_t seed : {uint64_t{1}, ~uint64_t{0} - 3}) {
        EXPECT_EQ(thin_blocks(blocks, keep, seed), thin_blocks_reference(blocks, keep, seed))
            << "block_k " << block_k << ", keep " << keep << ", seed " << seed;
      }
    }
  }
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
