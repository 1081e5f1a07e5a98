// Shared heads (Partition::head_splits): the partition's invariants, and the planner sharing a
// head's rows where whole heads cannot balance the groups of a grid without a ring.
#include <gtest/gtest.h>

#include "dbsp/error.hpp"
#include "dbsp/imbalance.hpp"
#include "dbsp/planner.hpp"

namespace dbsp {
namespace {

TEST(SharedHeads, PartitionGivesEachGroupItsRowsAndRejectsBadSplits) {
  Partition p = Partition::contiguous(Grid{2, 1}, 3, 10, 10);
  p.head_group = {0, 0, 1};
  p.head_splits = {{1, 1, {6, 10}}};
  EXPECT_NO_THROW(p.validate());
  EXPECT_EQ(p.heads_of(0), (std::vector<int>{0, 1}));
  EXPECT_EQ(p.heads_of(1), (std::vector<int>{2, 1}));
  EXPECT_EQ(p.rows_of(0, 1), (BlockRange{0, 6}));
  EXPECT_EQ(p.rows_of(1, 1), (BlockRange{6, 10}));
  EXPECT_EQ(p.rows_of(0, 0), (BlockRange{0, 10}));
  EXPECT_EQ(p.rows_of(1, 0).size(), 0);
  EXPECT_EQ(p.max_group_heads(), 2);
  const uint64_t shared = p.hash();
  p.head_splits[0].rows = {0, 4};  // a prefix works too
  EXPECT_NO_THROW(p.validate());
  EXPECT_EQ(p.rows_of(0, 1), (BlockRange{4, 10}));
  EXPECT_NE(p.hash(), shared);

  auto rejects = [&](std::vector<HeadSplit> splits, Grid grid = Grid{2, 1}) {
    Partition bad = Partition::contiguous(grid, 3, 10, 10);
    if (grid.ulysses == 2) bad.head_group = {0, 0, 1};
    bad.head_splits = std::move(splits);
    EXPECT_THROW(bad.validate(), Error);
  };
  rejects({{1, 0, {6, 10}}});                  // to its own group
  rejects({{1, 2, {6, 10}}});                  // no such group
  rejects({{3, 1, {6, 10}}});                  // no such head
  rejects({{1, 1, {0, 10}}});                  // every row
  rejects({{1, 1, {3, 6}}});                   // neither a prefix nor a suffix
  rejects({{1, 1, {6, 6}}});                   // empty
  rejects({{1, 1, {6, 10}}, {1, 1, {0, 2}}});  // split twice
  rejects({{0, 1, {6, 10}}}, Grid{1, 2});      // a ring
}

// Three equal dense heads on two ranks: whole heads give 2 : 1 (rho_s 4/3); sharing half of one
// head's rows gives 1.5 : 1.5.
TEST(SharedHeads, PlannerSharesAHeadWhereWholeHeadsCannotBalance) {
  const BlockMask mask(3, MaskGeometry::from_blocks(40, 40), true);
  const MaskStats stats(mask, 2);
  const CostModel cost;
  PlannerOptions sharing;
  sharing.share_heads = true;
  const LayerPlan shared = make_plan(stats, Grid{2, 1}, Policy::dbsp, sharing, cost);
  ASSERT_EQ(shared.partition.head_splits.size(), 1u);
  EXPECT_NEAR(shared.imbalance_ratio, 1.0, 0.03);
  EXPECT_NEAR(imbalance_ratio(mask, shared.partition), shared.imbalance_ratio, 1e-12);
  EXPECT_NO_THROW(shared.partition.validate());
  // Not asked (the default), not shared; never on a ring; never by the other policies.
  const LayerPlan kept = make_plan(stats, Grid{2, 1}, Policy::dbsp, {}, cost);
  EXPECT_TRUE(kept.partition.head_splits.empty());
  EXPECT_NEAR(kept.imbalance_ratio, 4.0 / 3.0, 1e-9);
  EXPECT_TRUE(
      make_plan(stats, Grid{1, 2}, Policy::dbsp, sharing, cost).partition.head_splits.empty());
  EXPECT_TRUE(
      make_plan(stats, Grid{2, 1}, Policy::paper, sharing, cost).partition.head_splits.empty());
}

TEST(SharedHeads, BalancedHeadsAreNotShared) {
  const BlockMask mask(4, MaskGeometry::from_blocks(40, 40), true);
  const MaskStats stats(mask, 2);
  PlannerOptions sharing;
  sharing.share_heads = true;
  EXPECT_TRUE(make_plan(stats, Grid{2, 1}, Policy::dbsp, sharing).partition.head_splits.empty());
}

}  // namespace
}  // namespace dbsp
