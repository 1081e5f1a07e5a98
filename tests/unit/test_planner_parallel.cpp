// The planner on several OpenMP threads (grids of choose_strategy, heads of the statistics,
// query-block chunks of head-summed rows, head groups) gives exactly the one-thread results.
#include <gtest/gtest.h>
#include <omp.h>

#include <string>
#include <vector>

#include "dbsp/planner.hpp"
#include "mask_families.hpp"
#include "omp_threads.hpp"
#include "plan/mask_stats.hpp"
#include "plan_equality.hpp"

namespace dbsp {
namespace {

constexpr Policy kPolicies[] = {Policy::static_split, Policy::paper, Policy::dbsp};
constexpr int kThreads = 4;  // more than this machine's cores is fine: the results may not differ

// Odd shapes, and masks large enough (over 2^14 mask words) that the statistics, the head-summed
// rows and the key shards are split over threads too, not only the grids.
std::vector<BlockMask> masks() {
  std::vector<BlockMask> out;
  out.push_back(testing::family_mask(3, 13, 9, 1));
  out.push_back(testing::family_mask(5, 37, 37, 2));
  out.push_back(testing::family_mask(12, 90, 71, 3));
  out.push_back(testing::family_mask(24, 300, 300, 4));
  out.push_back(testing::family_mask(40, 200, 260, 5));
  return out;
}

TEST(ParallelPlanner, ChooseStrategyEqualsTheSerialResultFieldByField) {
  for (const BlockMask& mask : masks()) {
    for (int ranks : {1, 2, 4, 6, 8, 12, 16}) {
      const MaskStats stats(mask, ranks);
      for (Policy policy : kPolicies) {
        SCOPED_TRACE(std::to_string(mask.heads()) + " heads x " + std::to_string(mask.q_blocks()) +
                     " x " + std::to_string(mask.k_blocks()) + ", " + std::to_string(ranks) +
                     " ranks, " + to_string(policy));
        StrategyChoice serial, parallel;
        {
          const testing::Threads one(1);
          serial = choose_strategy(stats, policy);
        }
        {
          const testing::Threads several(kThreads);
          parallel = choose_strategy(stats, policy);
        }
        ASSERT_EQ(serial.candidates.size(), factorizations(ranks).size());
        ASSERT_EQ(parallel.candidates.size(), serial.candidates.size());
        for (size_t i = 0; i < serial.candidates.size(); ++i) {
          SCOPED_TRACE(serial.candidates[i].partition.grid.name());
          EXPECT_EQ(serial.candidates[i].partition.grid, factorizations(ranks)[i]);
          testing::expect_same_plan(parallel.candidates[i], serial.candidates[i]);
        }
        testing::expect_same_plan(parallel.best, serial.best);
      }
    }
  }
}

TEST(ParallelPlanner, StatisticsEqualTheSerialOnes) {
  for (const BlockMask& mask : masks()) {
    for (int ranks : {1, 3, 8, 16}) {
      SCOPED_TRACE(std::to_string(mask.heads()) + " heads, " + std::to_string(ranks) + " ranks");
      const MaskStats serial = [&] {
        const testing::Threads one(1);
        return MaskStats(mask, ranks);
      }();
      const MaskStats parallel = [&] {
        const testing::Threads several(kThreads);
        return MaskStats(mask, ranks);
      }();
      const MaskStats::Data &a = serial.data(), &b = parallel.data();
      EXPECT_EQ(a.block_kept, b.block_kept);
      EXPECT_EQ(a.kept_per_head, b.kept_per_head);
      EXPECT_EQ(a.kept, b.kept);
      EXPECT_EQ(a.column_counts, b.column_counts);
    }
  }
}

// The reuse check scores a kept plan, blocks off their home shards included, on a new mask.
TEST(ParallelPlanner, ScoringAKeptPlanEqualsTheSerialScore) {
  const BlockMask planned_on = testing::family_mask(24, 300, 300, 6);
  const BlockMask scored_on = testing::family_mask(24, 300, 300, 7);
  for (int ranks : {4, 8, 16}) {
    const MaskStats planned(planned_on, ranks), scored(scored_on, ranks);
    int moved = 0;  // plans that move blocks, so that their groups' rows are read
    for (const Grid& grid : factorizations(ranks)) {
      SCOPED_TRACE(grid.name());
      const Partition partition = make_plan(planned, grid, Policy::dbsp).partition;
      moved += partition.moved_blocks() > 0;
      ImbalanceReport serial, parallel;
      {
        const testing::Threads one(1);
        serial = plan::evaluate(scored.data(), partition);
      }
      {
        const testing::Threads several(kThreads);
        parallel = plan::evaluate(scored.data(), partition);
      }
      EXPECT_EQ(parallel.ratio, serial.ratio);
      EXPECT_EQ(parallel.work, serial.work);
      EXPECT_EQ(parallel.group_time, serial.group_time);
    }
    EXPECT_GE(moved, 2) << ranks << " ranks";
  }
}

// A plan cache that plans on several threads makes the same decisions as one on a single thread.
TEST(ParallelPlanner, PlanCacheDecidesAsTheSerialOne) {
  std::vector<BlockMask> steps;
  for (uint64_t seed : {8u, 8u, 9u, 10u}) steps.push_back(testing::family_mask(24, 300, 300, seed));
  for (Policy policy : kPolicies) {
    PlanCache serial(1, 8, policy), parallel(1, 8, policy);
    for (const BlockMask& mask : steps) {
      PlanCache::Lookup a, b;
      {
        const testing::Threads one(1);
        a = serial.plan_for(0, mask);
      }
      {
        const testing::Threads several(kThreads);
        b = parallel.plan_for(0, mask);
      }
      EXPECT_EQ(a.replanned, b.replanned);
      EXPECT_EQ(a.current_ratio, b.current_ratio);
      testing::expect_same_plan(*b.plan, *a.plan);
    }
  }
}

}  // namespace
}  // namespace dbsp
