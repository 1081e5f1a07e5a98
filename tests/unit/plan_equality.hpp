// Two plans equal field by field (exactly: the planner's variants run the same operations in the
// same order, so even its floating-point results must agree).
#pragma once

#include <gtest/gtest.h>

#include "dbsp/planner.hpp"

namespace dbsp::testing {

inline void expect_same_plan(const LayerPlan& a, const LayerPlan& b) {
  EXPECT_EQ(a.policy, b.policy);
  EXPECT_EQ(a.partition.grid, b.partition.grid);
  EXPECT_EQ(a.partition.heads, b.partition.heads);
  EXPECT_EQ(a.partition.q_blocks, b.partition.q_blocks);
  EXPECT_EQ(a.partition.k_blocks, b.partition.k_blocks);
  EXPECT_EQ(a.partition.head_group, b.partition.head_group);
  EXPECT_EQ(a.partition.q_shard, b.partition.q_shard);
  EXPECT_EQ(a.partition.k_shard, b.partition.k_shard);
  EXPECT_EQ(a.partition.head_order, b.partition.head_order);
  EXPECT_EQ(a.partition.head_splits, b.partition.head_splits);
  // Exact: the same operations in the same order, whichever thread ran them.
  EXPECT_EQ(a.imbalance_ratio, b.imbalance_ratio);
  EXPECT_EQ(a.moved_blocks, b.moved_blocks);
  EXPECT_EQ(a.kept_blocks, b.kept_blocks);
  EXPECT_EQ(a.lower_bound, b.lower_bound);
  EXPECT_EQ(a.predicted.all_to_all_ms, b.predicted.all_to_all_ms);
  EXPECT_EQ(a.predicted.ring_ms, b.predicted.ring_ms);
  EXPECT_EQ(a.predicted.compute_ms, b.predicted.compute_ms);
  EXPECT_EQ(a.predicted.p2p_ms, b.predicted.p2p_ms);
  EXPECT_EQ(a.predicted.move_ms, b.predicted.move_ms);
  EXPECT_EQ(a.predicted.total_ms, b.predicted.total_ms);
}

}  // namespace dbsp::testing
