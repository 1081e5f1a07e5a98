// fastest_plan skips the grids whose cost floor cannot beat a planned total: it must still return
// choose_strategy's best plan field for field on any thread count, and no grid's plan may predict
// less than its floor.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "dbsp/error.hpp"
#include "dbsp/planner.hpp"
#include "dbsp/workload.hpp"
#include "mask_families.hpp"
#include "omp_threads.hpp"
#include "plan_equality.hpp"

namespace dbsp {
namespace {

// Rates under which different grids win: the defaults, a slow link (few ring steps, little
// all-to-all), a free link (the best balance wins), and a high fixed cost per row and step.
std::vector<CostModel> cost_models() {
  CostModel slow_link;
  slow_link.link_gbytes_per_s = 8;
  slow_link.link_latency_us = 200;
  CostModel free_link;
  free_link.link_gbytes_per_s = 1e6;
  free_link.link_latency_us = 0;
  free_link.copy_gbytes_per_s = 0;
  CostModel row_heavy;
  row_heavy.us_per_row_step = 2.0;
  return {CostModel{}, slow_link, free_link, row_heavy};
}

TEST(FastestPlan, EqualsChooseStrategysBestAndNoPlanBeatsItsFloor) {
  std::vector<BlockMask> masks;
  masks.push_back(testing::family_mask(3, 13, 9, 11));
  masks.push_back(testing::family_mask(5, 37, 37, 12));
  masks.push_back(testing::family_mask(12, 90, 71, 13));
  masks.push_back(testing::family_mask(40, 60, 60, 14));
  // A video layer (heads of very different density, one heavier than a 16th of the total).
  masks.push_back(SyntheticWorkload(model_preset("wan2.1-480p"), 0).block_mask(0, 3));
  int pruned = 0, grids = 0;
  for (const BlockMask& mask : masks) {
    for (int ranks : {1, 2, 3, 4, 6, 8, 12, 16}) {
      const MaskStats stats(mask, ranks);
      for (const CostModel& cost : cost_models()) {
        for (Policy policy : {Policy::static_split, Policy::paper, Policy::dbsp}) {
          for (bool share : {false, true}) {
            if (share && policy != Policy::dbsp) continue;
            SCOPED_TRACE(std::to_string(mask.heads()) + " heads x " +
                         std::to_string(mask.q_blocks()) + " x " + std::to_string(mask.k_blocks()) +
                         ", " + std::to_string(ranks) + " ranks, " + to_string(policy) +
                         (share ? " sharing heads" : "") + ", link " +
                         std::to_string(cost.link_gbytes_per_s) + " GB/s");
            PlannerOptions options;
            options.share_heads = share;
            const StrategyChoice all = choose_strategy(stats, policy, options, cost);
            // One thread skips every grid it can; four race (which grids finish first varies).
            for (int threads : {1, 4}) {
              const testing::Threads scope(threads);
              testing::expect_same_plan(fastest_plan(stats, policy, options, cost), all.best);
            }
            for (const LayerPlan& candidate : all.candidates) {
              const double floor =
                  predicted_floor(stats, candidate.partition.grid, policy, options, cost);
              EXPECT_LE(floor, candidate.predicted.total_ms * (1 + 1e-12))
                  << candidate.partition.grid.name();
              pruned += floor > all.best.predicted.total_ms * (1 + 1e-9);
              ++grids;
            }
          }
        }
      }
    }
  }
  // The floors must skip grids for pruning to pay at all (most ring grids on these rates).
  EXPECT_GT(pruned, grids / 4) << pruned << " of " << grids << " grids skippable";
}

TEST(FastestPlan, RejectsAGridOfAnotherRankCount) {
  const BlockMask mask = testing::family_mask(4, 10, 10, 1);
  const MaskStats stats(mask, 4);
  EXPECT_THROW(predicted_floor(stats, Grid{2, 1}, Policy::dbsp), Error);
}

}  // namespace
}  // namespace dbsp
