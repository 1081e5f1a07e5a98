// The JSON contract of `dbsp plan --json` (docs/cli.md): one strategy entry per (U, R, policy).
#pragma once

#include <nlohmann/json.hpp>

#include "dbsp/planner.hpp"

namespace dbsp::cli {

inline nlohmann::json strategy_json(const LayerPlan& plan) {
  return {{"ulysses", plan.partition.grid.ulysses},
          {"ring", plan.partition.grid.ring},
          {"policy", to_string(plan.policy)},
          {"imbalance_ratio", plan.imbalance_ratio},
          {"moved_blocks", plan.moved_blocks},
          {"predicted_ms", plan.predicted.total_ms},
          {"shared_heads", plan.partition.head_splits.size()}};
}

}  // namespace dbsp::cli
