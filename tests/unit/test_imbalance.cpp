// rho_s on hand-computed cases and against a literal transcription of SPEC 3.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <bit>
#include <random>

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

// Random sorted keys per row (not from blocks: blocks hold different key counts, some rows none).
FineMask random_fine_mask(int heads, MaskGeometry geometry, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> offsets{0};
  std::vector<int32_t> keys;
  for (int64_t r = 0; r < int64_t{heads} * geometry.q_blocks(); ++r) {
    const double keep = (rng() % 5 == 0) ? 0.0 : double(rng() % 1000) / 1000;
    for (int32_t key = 0; key < geometry.seq_k; ++key)
      if (double(rng() % 1000) / 1000 < keep) keys.push_back(key);
    offsets.push_back(static_cast<int64_t>(keys.size()));
  }
  return FineMask(heads, geometry, std::move(offsets), std::move(keys));
}

// Per cell the kept keys times the queries of their query block, in integers, then / block_q.
std::vector<std::vector<std::vector<double>>> exact_fine_work(const FineMask& mask,
                                                              const Partition& p) {
  const MaskGeometry& geo = mask.geometry();
  std::vector<std::vector<std::vector<int64_t>>> queries(
      p.grid.ulysses,
      std::vector<std::vector<int64_t>>(p.grid.ring, std::vector<int64_t>(p.grid.ring, 0)));
  for (int h = 0; h < mask.heads(); ++h)
    for (int i = 0; i < geo.q_blocks(); ++i)
      for (int32_t key : mask.keys(h, i)) {
        const int g = p.head_group[h];
        queries[g][p.q_shard[g][i]][p.k_shard[g][key / geo.block_k]] +=
            std::min<int64_t>(geo.block_q, geo.seq_q - int64_t{i} * geo.block_q);
      }
  std::vector<std::vector<std::vector<double>>> work(
      p.grid.ulysses,
      std::vector<std::vector<double>>(p.grid.ring, std::vector<double>(p.grid.ring)));
  for (int g = 0; g < p.grid.ulysses; ++g)
    for (int a = 0; a < p.grid.ring; ++a)
      for (int b = 0; b < p.grid.ring; ++b) work[g][a][b] = double(queries[g][a][b]) / geo.block_q;
  return work;
}

// The previous implementation: one fp64 add of the slice cost per kept key.
ImbalanceReport per_key_fine_report(const FineMask& mask, const Partition& p) {
  const MaskGeometry& geo = mask.geometry();
  std::vector<std::vector<std::vector<double>>> work(
      p.grid.ulysses,
      std::vector<std::vector<double>>(p.grid.ring, std::vector<double>(p.grid.ring, 0.0)));
  for (int h = 0; h < mask.heads(); ++h) {
    const int g = p.head_group[h];
    for (int i = 0; i < geo.q_blocks(); ++i) {
      const double slice_cost =
          double(std::min<int64_t>(geo.block_q, geo.seq_q - int64_t{i} * geo.block_q)) /
          geo.block_q;
      for (int32_t key : mask.keys(h, i)) {
        work[g][p.q_shard[g][i]][p.k_shard[g][key / geo.block_k]] += slice_cost;
      }
    }
  }
  return imbalance_from_work(p.grid, std::move(work));
}

Partition scrambled(Partition p, int seed) {
  for (int g = 0; g < p.grid.ulysses; ++g) {
    for (int i = 0; i < p.q_blocks; ++i) p.q_shard[g][i] = (i * 7 + g + seed) % p.grid.ring;
    for (int j = 0; j < p.k_blocks; ++j) p.k_shard[g][j] = (j * 5 + 3 * g + seed) % p.grid.ring;
  }
  for (int h = 0; h < p.heads; ++h) p.head_group[h] = (h * 3 + seed) % p.grid.ulysses;
  return p;
}

TEST(ImbalanceRatio, FineMaskWorkIsTheExactQueryWeightedKeyCount) {
  // Short last blocks on both sides, block sizes that are not powers of two, shards of runs of
  // one block (scrambled) and of many (contiguous).
  const MaskGeometry geometries[] = {{1000, 997, 64, 64}, {700, 1301, 48, 40}, {130, 77, 64, 16}};
  int seed = 0;
  for (const MaskGeometry& geometry : geometries) {
    const FineMask mask = random_fine_mask(5, geometry, 300 + seed);
    for (int ranks : {1, 2, 3, 4, 6, 8}) {
      for (const Grid& grid : factorizations(ranks)) {
        const Partition contiguous =
            Partition::contiguous(grid, 5, geometry.q_blocks(), geometry.k_blocks());
        for (const Partition& p : {contiguous, scrambled(contiguous, ++seed)}) {
          const ImbalanceReport report = imbalance_report(mask, p);
          EXPECT_EQ(report.work, exact_fine_work(mask, p)) << grid.name();
          // Power-of-two query blocks: every slice cost is exact, so the per-key adds are too.
          if (std::has_single_bit(unsigned(geometry.block_q))) {
            const ImbalanceReport previous = per_key_fine_report(mask, p);
            EXPECT_EQ(report.work, previous.work) << grid.name();
            EXPECT_EQ(report.ratio, previous.ratio) << grid.name();
          }
        }
      }
    }
  }
}

TEST(ImbalanceRatio, FineMaskReportDoesNotDependOnTheThreadCount) {
  // Enough keys (> 2^16) for the parallel path; unevenly filled blocks defeat the position
  // guesses, which must only cost time.
  const FineMask mask = random_fine_mask(3, MaskGeometry{2500, 3000, 64, 64}, 77);
  ASSERT_GT(mask.kept(), int64_t{1} << 16);
  const int saved = omp_get_max_threads();
  for (const Grid& grid : {Grid{1, 8}, Grid{3, 2}, Grid{2, 4}}) {
    const Partition p = scrambled(Partition::contiguous(grid, 3, 40, 47), 1);
    const ImbalanceReport previous = per_key_fine_report(mask, p);
    for (int threads : {1, 2, 4, 7}) {
      omp_set_num_threads(threads);
      const ImbalanceReport report = imbalance_report(mask, p);
      EXPECT_EQ(report.work, previous.work) << grid.name() << " " << threads << " threads";
      EXPECT_EQ(report.ratio, previous.ratio) << grid.name() << " " << threads << " threads";
    }
  }
  omp_set_num_threads(saved);
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
