// rho_s on hand-computed cases and against a literal transcription of SPEC 3.
#include <gtest/gtest.h>

#include <algorithm>

#include "dbsp/block_layout.hpp"
#include "dbsp/error.hpp"
#include "dbsp/imbalance.hpp"
#include "mask_families.hpp"

namespace dbsp {
namespace {

// SPEC 3 written out directly, one bit at a time.
double spec_ratio(const BlockMask& mask, const Partition& p) {
  const int U = p.grid.ulysses, R = p.grid.ring;
  std::vector<std::vector<std::vector<double>>> W(
      U, std::vector<std::vector<double>>(R, std::vector<double>(R)));
  double total = 0;
  for (int h = 0; h < mask.heads(); ++h)
    for (int i = 0; i < mask.q_blocks(); ++i)
      for (int j = 0; j < mask.k_blocks(); ++j)
        if (mask.get(h, i, j)) {
          const int g = p.head_group[h];
          W[g][p.q_shard[g][i]][p.k_shard[g][j]] += 1;
          total += 1;
        }
  double worst = 0;
  for (int g = 0; g < U; ++g) {
    double T = 0;
    for (int t = 0; t < R; ++t) {
      double m = 0;
      for (int r = 0; r < R; ++r) m = std::max(m, W[g][r][(r + t) % R]);
      T += m;
    }
    worst = std::max(worst, T);
  }
  return total > 0 ? worst / (total / (U * R)) : 1.0;
}

TEST(ImbalanceRatio, HandComputedRingOfThree) {
  // One head, 3 x 3 blocks, R = 3: steps take max(1,1,1) + max(1,1,1) + max(0,0,1) = 3.
  BlockMask mask(1, MaskGeometry::from_blocks(3, 3));
  const int bits[3][3] = {{1, 1, 0}, {0, 1, 1}, {1, 1, 1}};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) mask.set(0, i, j, bits[i][j]);
  const Partition p = Partition::contiguous(Grid{1, 3}, 1, 3, 3);
  EXPECT_DOUBLE_EQ(imbalance_ratio(mask, p), 3.0 / (7.0 / 3.0));
}

TEST(ImbalanceRatio, HandComputedUlyssesOnly) {
  // Heads with 4, 1, 1 kept blocks on U = 3: max group 4 over mean 2.
  BlockMask mask(3, MaskGeometry::from_blocks(2, 2));
  mask.set(0, 0, 0), mask.set(0, 0, 1), mask.set(0, 1, 0), mask.set(0, 1, 1);
  mask.set(1, 0, 0), mask.set(2, 1, 1);
  EXPECT_DOUBLE_EQ(imbalance_ratio(mask, Partition::contiguous(Grid{3, 1}, 3, 2, 2)), 2.0);
}

TEST(ImbalanceRatio, EmptyMaskIsBalanced) {
  BlockMask mask(4, MaskGeometry::from_blocks(7, 7));
  EXPECT_DOUBLE_EQ(imbalance_ratio(mask, Partition::contiguous(Grid{2, 3}, 4, 7, 7)), 1.0);
}

TEST(ImbalanceRatio, FullMaskOnUnevenShardsCountsTheLargestShard) {
  // 5 heads over U = 2 (2 + 3) and 7 blocks over R = 3 (2, 2, 3): the 3-head group leads; each
  // ring step is led by the 3-block query shard against the 3-block key shard or a 2-block one.
  BlockMask mask(5, MaskGeometry::from_blocks(7, 7), true);
  const Partition p = Partition::contiguous(Grid{2, 3}, 5, 7, 7);
  EXPECT_DOUBLE_EQ(imbalance_ratio(mask, p), spec_ratio(mask, p));
  // T_1 = 3 heads * (9 + 6 + 6) = 63; mean = 5 * 49 / 6.
  EXPECT_NEAR(imbalance_ratio(mask, p), 63.0 / (245.0 / 6.0), 1e-12);
}

TEST(ImbalanceRatio, MatchesSpecForManyGridsAndShapes) {
  for (int ranks : {1, 2, 3, 4, 5, 6, 8}) {
    for (const Grid& grid : factorizations(ranks)) {
      const BlockMask mask = testing::family_mask(7, 29, 31, 100 + ranks);
      Partition p = Partition::contiguous(grid, 7, 29, 31);
      EXPECT_NEAR(imbalance_ratio(mask, p), spec_ratio(mask, p), 1e-12) << grid.name();
      // A scrambled partition, different per group.
      for (int g = 0; g < grid.ulysses; ++g) {
        for (int i = 0; i < 29; ++i) p.q_shard[g][i] = (i * 7 + g) % grid.ring;
        for (int j = 0; j < 31; ++j) p.k_shard[g][j] = (j * 5 + 3 * g) % grid.ring;
      }
      for (int h = 0; h < 7; ++h) p.head_group[h] = (h * 3) % grid.ulysses;
      EXPECT_NEAR(imbalance_ratio(mask, p), spec_ratio(mask, p), 1e-12) << grid.name();
    }
  }
}

TEST(ImbalanceRatio, FineMaskCountsSlicesPerKeyShard) {
  BlockMask block = testing::family_mask(3, 9, 9, 7);
  const FineMask fine = FineMask::from_block(block);
  const Partition p = Partition::contiguous(Grid{1, 3}, 3, 9, 9);
  // Whole blocks as fine masks: the same shares, except the short last query block weighs less.
  const ImbalanceReport fine_report = imbalance_report(fine, p);
  EXPECT_GE(fine_report.ratio, 1.0);
  double slices = 0;
  for (auto& a : fine_report.work[0])
    for (double w : a) slices += w;
  const double full = double(block.kept()) * 64;
  EXPECT_LT(slices, full);
  EXPECT_GT(slices, full * 0.8);
}

TEST(ImbalanceRatio, RejectsMismatchedPartition) {
  BlockMask mask(2, MaskGeometry::from_blocks(4, 4));
  EXPECT_THROW(imbalance_ratio(mask, Partition::contiguous(Grid{1, 2}, 3, 4, 4)), Error);
  Partition bad = Partition::contiguous(Grid{1, 2}, 2, 4, 4);
  bad.q_shard[0][1] = 5;
  EXPECT_THROW(imbalance_ratio(mask, bad), Error);
}

}  // namespace
}  // namespace dbsp
