// make_plan / choose_strategy: the three policies behind one entry point.
#include "dbsp/planner.hpp"

#include <algorithm>

#include "dbsp/error.hpp"
#include "dbsp/imbalance.hpp"
#include "plan/head_balance.hpp"
#include "plan/mask_stats.hpp"
#include "plan/paper_planner.hpp"
#include "plan/ring_balance.hpp"

namespace dbsp {

const char* to_string(Policy policy) {
  switch (policy) {
    case Policy::static_split:
      return "static";
    case Policy::paper:
      return "dbsp-paper";
    case Policy::dbsp:
      return "dbsp";
  }
  return "?";
}

Policy parse_policy(std::string_view text) {
  if (text == "static") return Policy::static_split;
  if (text == "dbsp-paper" || text == "paper") return Policy::paper;
  if (text == "dbsp") return Policy::dbsp;
  fail("unknown policy '", text, "': expected static, dbsp-paper or dbsp");
}

namespace {

double head_lower_bound(const MaskStats::Data& stats, int ulysses) {
  if (stats.kept == 0) return 1.0;
  const int64_t heaviest =
      *std::max_element(stats.kept_per_head.begin(), stats.kept_per_head.end());
  return std::max(1.0, double(ulysses) * double(heaviest) / double(stats.kept));
}

Partition dbsp_partition(const MaskStats::Data& stats, Grid grid, const PlannerOptions& options,
                         std::vector<std::vector<std::vector<double>>>& work) {
  const BlockMask& mask = *stats.mask;
  Partition p = Partition::contiguous(grid, mask.heads(), mask.q_blocks(), mask.k_blocks());
  if (grid.ulysses > 1)
    p.head_group = plan::balanced_head_groups(stats.kept_per_head, grid.ulysses);
  std::vector<double> group_total(grid.ulysses, 0.0);
  for (int h = 0; h < mask.heads(); ++h) group_total[p.head_group[h]] += stats.kept_per_head[h];
  const double total = double(stats.kept);
  const double heaviest = *std::max_element(group_total.begin(), group_total.end());
  const double head_ratio = total > 0 ? grid.ulysses * heaviest / total : 1.0;
  // Each group may take as long as the heaviest group would if perfectly balanced, plus a little:
  // lighter groups keep more blocks at home.
  const double goal = std::max(1.0, head_ratio) * 1.004 * total / grid.ranks();
  work.assign(grid.ulysses, {});
  for (int g = 0; g < grid.ulysses; ++g) {
    plan::RingAssignment ring =
        plan::balance_ring(stats, p.heads_of(g), grid.ring, goal, options.search_rounds);
    p.q_shard[g] = std::move(ring.q_shard);
    p.k_shard[g] = std::move(ring.k_shard);
    work[g] = std::move(ring.work);
  }
  return p;
}

}  // namespace

LayerPlan make_plan(const MaskStats& stats, Grid grid, Policy policy, const PlannerOptions& options,
                    const CostModel& cost) {
  const MaskStats::Data& d = stats.data();
  require(grid.ranks() == d.ranks, "make_plan: grid ", grid.name(), " has ", grid.ranks(),
          " ranks but the mask statistics were built for ", d.ranks);
  const BlockMask& mask = *d.mask;
  LayerPlan plan;
  plan.policy = policy;
  plan.kept_blocks = d.kept;
  plan.lower_bound = head_lower_bound(d, grid.ulysses);
  ImbalanceReport report;
  switch (policy) {
    case Policy::static_split:
      plan.partition = Partition::contiguous(grid, mask.heads(), mask.q_blocks(), mask.k_blocks());
      report = plan::evaluate(d, plan.partition);
      break;
    case Policy::paper:
      plan.partition = plan::paper_partition(d, grid, options.reward);
      report = plan::evaluate(d, plan.partition);
      break;
    case Policy::dbsp: {
      std::vector<std::vector<std::vector<double>>> work;
      plan.partition = dbsp_partition(d, grid, options, work);
      report = imbalance_from_work(grid, std::move(work));
      // Never worse than not balancing, nor than the paper's row/column greedy (which can win by
      // a hair on smooth masks, at the price of moving most blocks).
      auto consider = [&](Partition candidate) {
        ImbalanceReport candidate_report = plan::evaluate(d, candidate);
        if (candidate_report.ratio < report.ratio - 1e-12) {
          plan.partition = std::move(candidate);
          report = std::move(candidate_report);
        }
      };
      consider(Partition::contiguous(grid, mask.heads(), mask.q_blocks(), mask.k_blocks()));
      if (grid.ring > 1 && report.ratio > std::max(1.0, plan.lower_bound) * 1.001) {
        consider(plan::paper_partition(d, grid, options.reward));
      }
      break;
    }
  }
  plan.imbalance_ratio = report.ratio;
  plan.moved_blocks = plan.partition.moved_blocks();
  plan.predicted = cost.predict(grid, plan.imbalance_ratio, d.kept, mask.heads(),
                                mask.geometry().seq_q, plan.moved_blocks);
  return plan;
}

StrategyChoice choose_strategy(const MaskStats& stats, Policy policy, const PlannerOptions& options,
                               const CostModel& cost) {
  StrategyChoice choice;
  for (const Grid& grid : factorizations(stats.ranks())) {
    choice.candidates.push_back(make_plan(stats, grid, policy, options, cost));
  }
  const auto best = std::min_element(choice.candidates.begin(), choice.candidates.end(),
                                     [](const LayerPlan& a, const LayerPlan& b) {
                                       return a.predicted.total_ms < b.predicted.total_ms;
                                     });
  choice.best = *best;
  return choice;
}

PlanCache::PlanCache(int layers, int ranks, Policy policy, PlannerOptions options, CostModel cost,
                     std::optional<Grid> grid)
    : ranks_(ranks), policy_(policy), grid_(grid), options_(options), cost_(cost), plans_(layers) {
  require(layers >= 1, "PlanCache: layer count must be >= 1, got ", layers);
  require(!grid || grid->ranks() == ranks, "PlanCache: grid ", grid ? grid->name() : "",
          " does not have ", ranks, " ranks");
}

PlanCache::Lookup PlanCache::plan_for(int layer, const BlockMask& mask) {
  require(layer >= 0 && layer < static_cast<int>(plans_.size()), "PlanCache: layer ", layer,
          " outside [0, ", plans_.size(), ")");
  MaskStats stats(mask, ranks_);
  std::optional<LayerPlan>& kept = plans_[layer];
  if (kept && kept->partition.heads == mask.heads() &&
      kept->partition.q_blocks == mask.q_blocks() && kept->partition.k_blocks == mask.k_blocks()) {
    const double ratio = plan::evaluate(stats.data(), kept->partition).ratio;
    // P_s is measured against what any plan could reach on this mask: when one head alone
    // exceeds its group's share, re-planning cannot beat the head lower bound.
    const double floor = head_lower_bound(stats.data(), kept->partition.grid.ulysses);
    if (policy_ == Policy::static_split || ratio <= options_.reuse_threshold * floor) {
      return {&*kept, false, ratio};
    }
  }
  kept = grid_ ? make_plan(stats, *grid_, policy_, options_, cost_)
               : choose_strategy(stats, policy_, options_, cost_).best;
  ++replans_;
  return {&*kept, true, kept->imbalance_ratio};
}

}  // namespace dbsp
