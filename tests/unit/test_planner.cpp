// Planner invariants and quality: every policy yields a valid partition whose reported rho_s is
// exact; ours is never worse than static or the paper's and stays within the bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "dbsp/block_layout.hpp"
#include "dbsp/error.hpp"
#include "dbsp/imbalance.hpp"
#include "dbsp/planner.hpp"
#include "mask_families.hpp"

namespace dbsp {
namespace {

constexpr Policy kPolicies[] = {Policy::static_split, Policy::paper, Policy::dbsp};

TEST(Planner, EveryPolicyGivesAValidPartitionWithExactRatio) {
  for (int ranks : {1, 2, 3, 4, 6, 8}) {
    const BlockMask mask = testing::family_mask(5, 37, 37, 40 + ranks);
    const MaskStats stats(mask, ranks);
    for (const Grid& grid : factorizations(ranks)) {
      for (Policy policy : kPolicies) {
        const LayerPlan plan = make_plan(stats, grid, policy);
        SCOPED_TRACE(grid.name() + " " + to_string(policy));
        EXPECT_NO_THROW(plan.partition.validate());
        EXPECT_EQ(plan.partition.grid, grid);
        EXPECT_NEAR(plan.imbalance_ratio, imbalance_ratio(mask, plan.partition), 1e-9);
        EXPECT_NEAR(plan.moved_blocks, plan.partition.moved_blocks(), 1e-9);
        EXPECT_GE(plan.imbalance_ratio, 1.0 - 1e-12);
        // Every block lands on exactly one shard per group and token counts add up.
        const BlockLayout layout = BlockLayout::uniform(mask.geometry().seq_q, 64);
        for (int g = 0; g < grid.ulysses; ++g) {
          int64_t tokens = 0;
          int blocks = 0;
          for (int r = 0; r < grid.ring; ++r) {
            const std::vector<int> mine = plan.partition.q_blocks_of(g, r);
            tokens += BlockLayout::gather(layout, mine).tokens();
            blocks += static_cast<int>(mine.size());
          }
          EXPECT_EQ(blocks, mask.q_blocks());
          EXPECT_EQ(tokens, mask.geometry().seq_q);
        }
      }
    }
  }
}

TEST(Planner, StaticPolicyIsTheContiguousSplit) {
  const BlockMask mask = testing::family_mask(6, 20, 20, 3);
  const MaskStats stats(mask, 4);
  const LayerPlan plan = make_plan(stats, Grid{2, 2}, Policy::static_split);
  EXPECT_EQ(plan.partition.hash(), Partition::contiguous(Grid{2, 2}, 6, 20, 20).hash());
  EXPECT_EQ(plan.moved_blocks, 0.0);
}

TEST(PipelineHeadOrder, HeaviestFirstSecondHeaviestLastTheRestHeavierFirst) {
  Partition p = Partition::contiguous(Grid{3, 1}, 9, 4, 4);
  p.head_group = {0, 1, 0, 2, 0, 0, 1, 2, 1};
  //              group 0: heads 0, 2, 4, 5; group 1: 1, 6, 8; group 2: 3, 7
  const std::vector<int64_t> work = {5, 7, 9, 4, 1, 5, 2, 8, 3};
  p.head_order = pipeline_head_order(p, work);
  EXPECT_NO_THROW(p.validate());
  // Group 0: 2 (9) first, then 5 (5, ties keep ascending order after 0) and 4 (1), 0 (5) last.
  EXPECT_EQ(p.heads_of(0), (std::vector<int>{2, 5, 4, 0}));
  EXPECT_EQ(p.heads_of(1), (std::vector<int>{1, 6, 8}));  // 7 first, 2 between, 3 last
  EXPECT_EQ(p.heads_of(2), (std::vector<int>{7, 3}));
  EXPECT_THROW(pipeline_head_order(p, {1, 2}), Error);
}

TEST(PipelineHeadOrder, TwoHeadsGoLighterFirstWhereNoGroupHoldsMoreThanThree) {
  Partition p = Partition::contiguous(Grid{3, 1}, 7, 4, 4);
  p.head_group = {0, 1, 0, 2, 1, 0, 2};
  //              group 0: heads 0, 2, 5; group 1: 1, 4; group 2: 3, 6
  const std::vector<int64_t> work = {5, 7, 9, 4, 1, 5, 4};
  p.head_order = pipeline_head_order(p, work);
  EXPECT_NO_THROW(p.validate());
  EXPECT_EQ(p.heads_of(0), (std::vector<int>{2, 5, 0}));  // 9 first, 5 (tie: lower head 0 last)
  EXPECT_EQ(p.heads_of(1), (std::vector<int>{4, 1}));     // 1 before 7
  EXPECT_EQ(p.heads_of(2), (std::vector<int>{6, 3}));     // equal work: the higher head first
}

TEST(PipelineHeadOrder, PlansOfGridsWithoutARingCarryItAndHashIt) {
  const BlockMask mask = testing::family_mask(7, 20, 20, 5);
  const MaskStats stats(mask, 4);
  for (Policy policy : kPolicies) {
    const LayerPlan chunked = make_plan(stats, Grid{4, 1}, policy);
    Partition expected = chunked.partition;
    expected.head_order = pipeline_head_order(expected, mask.kept_per_head());
    EXPECT_EQ(chunked.partition.head_order, expected.head_order) << to_string(policy);
    Partition ascending = chunked.partition;
    ascending.head_order.clear();
    EXPECT_NE(ascending.hash(), chunked.partition.hash()) << to_string(policy);
    // A ring, or one group: nothing is pipelined, the input's order stays.
    EXPECT_TRUE(make_plan(stats, Grid{2, 2}, policy).partition.head_order.empty());
    EXPECT_TRUE(make_plan(stats, Grid{1, 4}, policy).partition.head_order.empty());
  }
}

TEST(PipelineHeadOrder, PartitionRejectsAnOrderThatIsNotAPermutation) {
  Partition p = Partition::contiguous(Grid{2, 1}, 4, 3, 3);
  p.head_order = {0, 1, 2};
  EXPECT_THROW(p.validate(), Error);
  p.head_order = {0, 1, 1, 3};
  EXPECT_THROW(p.validate(), Error);
  p.head_order = {3, 1, 0, 2};
  EXPECT_NO_THROW(p.validate());
  EXPECT_EQ(p.heads_of(0), (std::vector<int>{1, 0}));
  EXPECT_EQ(p.heads_of(1), (std::vector<int>{3, 2}));
}

TEST(Planner, OursBeatsStaticAndPaperAndMeetsTheBoundOnUnseenFamilies) {
  for (uint64_t seed : {11u, 12u, 13u, 14u, 15u, 16u}) {
    const BlockMask mask = testing::family_mask(24, 160, 160, seed);
    const MaskStats stats(mask, 8);
    for (const Grid& grid : factorizations(8)) {
      SCOPED_TRACE("seed " + std::to_string(seed) + " " + grid.name());
      const LayerPlan ours = make_plan(stats, grid, Policy::dbsp);
      const LayerPlan paper = make_plan(stats, grid, Policy::paper);
      const LayerPlan fixed = make_plan(stats, grid, Policy::static_split);
      EXPECT_LE(ours.imbalance_ratio, fixed.imbalance_ratio + 1e-12);
      EXPECT_LE(ours.imbalance_ratio, paper.imbalance_ratio + 1e-12);
      EXPECT_LE(ours.imbalance_ratio, std::max(1.05, 1.02 * ours.lower_bound));
    }
  }
}

TEST(Planner, LowerBoundComesFromTheHeaviestHead) {
  // One head holds everything: with U = 4 no head-preserving split can beat 4.
  BlockMask mask(4, MaskGeometry::from_blocks(16, 16));
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) mask.set(0, i, j);
  const MaskStats stats(mask, 4);
  const LayerPlan plan = make_plan(stats, Grid{4, 1}, Policy::dbsp);
  EXPECT_DOUBLE_EQ(plan.lower_bound, 4.0);
  EXPECT_DOUBLE_EQ(plan.imbalance_ratio, 4.0);
}

TEST(Planner, BalancedMaskMovesNothing) {
  // A full mask is balanced by the contiguous split: our planner keeps every block home.
  BlockMask mask(8, MaskGeometry::from_blocks(64, 64), true);
  const MaskStats stats(mask, 8);
  for (const Grid& grid : factorizations(8)) {
    const LayerPlan plan = make_plan(stats, grid, Policy::dbsp);
    EXPECT_EQ(plan.moved_blocks, 0.0) << grid.name();
    EXPECT_NEAR(plan.imbalance_ratio, 1.0, 1e-12) << grid.name();
  }
}

TEST(Planner, IsDeterministic) {
  const BlockMask mask = testing::family_mask(12, 90, 90, 5);
  const MaskStats a(mask, 6), b(mask, 6);
  for (const Grid& grid : factorizations(6)) {
    EXPECT_EQ(make_plan(a, grid, Policy::dbsp).partition.hash(),
              make_plan(b, grid, Policy::dbsp).partition.hash());
  }
}

TEST(Planner, RejectsGridOfWrongSize) {
  const BlockMask mask = testing::family_mask(4, 10, 10, 1);
  const MaskStats stats(mask, 4);
  EXPECT_THROW(make_plan(stats, Grid{2, 1}, Policy::dbsp), Error);
  EXPECT_THROW(parse_grid("4by2"), Error);
  EXPECT_EQ(parse_grid("4x2"), (Grid{4, 2}));
  EXPECT_EQ(parse_grid("U2R4"), (Grid{2, 4}));
  EXPECT_THROW(parse_policy("fastest"), Error);
}

TEST(StrategySelection, PicksTheFastestPredictedGrid) {
  const BlockMask mask = testing::family_mask(16, 120, 120, 9);
  const MaskStats stats(mask, 8);
  const StrategyChoice choice = choose_strategy(stats, Policy::dbsp);
  ASSERT_EQ(choice.candidates.size(), factorizations(8).size());
  for (const LayerPlan& c : choice.candidates) {
    EXPECT_LE(choice.best.predicted.total_ms, c.predicted.total_ms);
  }
}

TEST(CostModel, FollowsThePaperFormula) {
  CostModel cost;
  cost.link_latency_us = 0;
  const auto b = cost.predict(Grid{2, 4}, 1.2, 1'000'000, 40, 75600, 0);
  EXPECT_NEAR(b.ring_ms, (std::max(b.compute_ms, b.p2p_ms) * 3 + b.compute_ms) * 1.2, 1e-12);
  EXPECT_NEAR(b.total_ms, b.all_to_all_ms + b.ring_ms, 1e-12);
  const auto ulysses = cost.predict(Grid{8, 1}, 1.0, 1'000'000, 40, 75600, 0);
  EXPECT_EQ(ulysses.p2p_ms, 0.0);
  EXPECT_NEAR(ulysses.ring_ms, ulysses.compute_ms, 1e-12);
}

// Staging: every byte a rank sends is packed and every byte it receives unpacked, and the slice
// it keeps is copied across (2 - 1/U of its four tensors in the all-to-all; K and V twice in the
// ring); a grid that moves nothing copies nothing.
TEST(CostModel, ChargesTheStagingCopiesOfEveryExchange) {
  CostModel free_copies;
  free_copies.copy_gbytes_per_s = 0;
  CostModel copies = free_copies;
  copies.copy_gbytes_per_s = 500;
  const int64_t tokens = 75600;
  const double head_bytes = 128.0 * 2;  // one token of one head, bf16
  for (Grid grid : {Grid{8, 1}, Grid{2, 4}, Grid{1, 8}, Grid{1, 1}}) {
    const auto a = free_copies.predict(grid, 1.0, 1'000'000, 40, tokens, 0);
    const auto b = copies.predict(grid, 1.0, 1'000'000, 40, tokens, 0);
    const double U = grid.ulysses, R = grid.ring;
    const double shard = tokens / R * head_bytes * (40 / U);  // one tensor of the group's heads
    const double a2a_copies = U > 1 ? 4 * shard * (2 - 1 / U) / 500e6 : 0.0;
    const double ring_copies = R > 1 ? 2 * 2 * shard / 500e6 : 0.0;
    EXPECT_NEAR(b.all_to_all_ms - a.all_to_all_ms, a2a_copies, 1e-9) << grid.name();
    EXPECT_NEAR(b.p2p_ms - a.p2p_ms, ring_copies, 1e-9) << grid.name();
    EXPECT_EQ(b.compute_ms, a.compute_ms) << grid.name();
  }
}

TEST(PlanCache, ReusesWhileTheMaskStaysSimilarAndReplansWhenItDrifts) {
  BlockMask mask = testing::family_mask(8, 64, 64, 21);
  PlanCache cache(2, 4, Policy::dbsp);
  auto first = cache.plan_for(0, mask);
  EXPECT_TRUE(first.replanned);
  auto again = cache.plan_for(0, mask);
  EXPECT_FALSE(again.replanned);
  EXPECT_EQ(cache.replans(), 1);
  // A very different mask: all work in one head.
  BlockMask skewed(8, mask.geometry());
  for (int i = 0; i < 64; ++i)
    for (int j = 0; j < 64; ++j) skewed.set(i % 8, i, j);
  auto drift = cache.plan_for(0, skewed);
  EXPECT_TRUE(drift.replanned || drift.current_ratio <= 1.10);
  EXPECT_THROW(cache.plan_for(2, mask), Error);
}

}  // namespace
}  // namespace dbsp
