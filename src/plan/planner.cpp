// make_plan / choose_strategy: the three policies behind one entry point.
#include "dbsp/planner.hpp"

#include <algorithm>
#include <atomic>
#include <limits>
#include <memory>
#include <numeric>
#include <optional>

#include "dbsp/error.hpp"
#include "dbsp/imbalance.hpp"
#include "plan/head_balance.hpp"
#include "plan/head_set_rows.hpp"
#include "plan/head_split.hpp"
#include "plan/mask_stats.hpp"
#include "plan/paper_planner.hpp"
#include "plan/parallel.hpp"
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

// The size of the mask, which the planner's passes scale with: whether a step is worth threads.
size_t mask_words(const MaskStats::Data& stats) {
  return static_cast<size_t>(stats.mask->heads()) * stats.mask->q_blocks() * stats.rows.words;
}

double head_lower_bound(const MaskStats::Data& stats, int ulysses) {
  if (stats.kept == 0) return 1.0;
  const int64_t heaviest =
      *std::max_element(stats.kept_per_head.begin(), stats.kept_per_head.end());
  return std::max(1.0, double(ulysses) * double(heaviest) / double(stats.kept));
}

// Head sets that refine two head-to-group assignments (one set per non-empty pair of groups), so
// that both groupings are read from one pass over the mask.
struct SharedRows {
  std::vector<std::unique_ptr<plan::HeadSetRows>> sets;
  std::vector<plan::HeadSets> of_first;   // [groups of `first`]
  std::vector<plan::HeadSets> of_second;  // [groups of `second`]
  plan::HeadSets all;
};

// `key_shards`, when given: per group of `first`, the key shards (`shard_count` of them) that its
// sets count their rows' masses in; with none, `shard_count` 1 gives row totals and 0 nothing.
SharedRows shared_rows(const MaskStats::Data& stats, const std::vector<int>& first,
                       const std::vector<int>& second, int groups, int shard_count,
                       const std::vector<std::vector<int>>* key_shards = nullptr) {
  std::vector<std::vector<int>> heads(static_cast<size_t>(groups) * groups);
  for (size_t h = 0; h < first.size(); ++h)
    heads[static_cast<size_t>(first[h]) * groups + second[h]].push_back(int(h));
  const std::vector<int> one_shard(shard_count == 1 ? stats.mask->k_blocks() : 0, 0);
  std::vector<size_t> pairs;  // the non-empty sets, as a * groups + b
  for (size_t pair = 0; pair < heads.size(); ++pair) {
    if (!heads[pair].empty()) pairs.push_back(pair);
  }
  SharedRows rows;
  rows.sets.resize(pairs.size());
  // Sets are independent. Built side by side, not one after another, since a set of a few
  // heads spreads over few threads (one per 64 query blocks), and every set built alone would
  // wake and wait for the team once.
  plan::parallel_for(static_cast<int>(pairs.size()), mask_words(stats) >= plan::kThreadedWords,
                     [&](int n) {
                       const size_t a = pairs[n] / groups;
                       rows.sets[n] = std::make_unique<plan::HeadSetRows>(
                           stats, std::move(heads[pairs[n]]),
                           key_shards ? (*key_shards)[a] : one_shard, shard_count);
                     });
  rows.of_first.resize(groups);
  rows.of_second.resize(groups);
  for (size_t n = 0; n < pairs.size(); ++n) {
    plan::HeadSetRows* set = rows.sets[n].get();
    rows.of_first[pairs[n] / groups].push_back(set);
    rows.of_second[pairs[n] % groups].push_back(set);
    rows.all.push_back(set);
  }
  return rows;
}

// rho_s of a partition whose groups are read from the given head sets; none once a group shows
// that rho_s cannot be below `beat` (heaviest groups first, so that this shows early).
std::optional<ImbalanceReport> report_from_rows(const MaskStats::Data& stats, const Partition& p,
                                                const std::vector<plan::HeadSets>& sets_of_group,
                                                double beat = 0) {
  const int U = p.grid.ulysses, R = p.grid.ring;
  std::vector<double> group_mass(U, 0.0);
  for (int h = 0; h < p.heads; ++h) group_mass[p.head_group[h]] += double(stats.kept_per_head[h]);
  std::vector<int> order(U);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return group_mass[a] > group_mass[b]; });
  const double mean = double(stats.kept) / p.grid.ranks();
  std::vector<std::vector<std::vector<double>>> work(
      U, std::vector<std::vector<double>>(R, std::vector<double>(R, 0.0)));
  for (int g : order) {
    plan::add_work(stats, sets_of_group[g], p.q_shard[g], p.k_shard[g], R, work[g]);
    if (beat > 0 && mean > 0 && plan::ring_time(work[g]) / mean >= beat - 1e-12) return {};
  }
  return imbalance_from_work(p.grid, std::move(work));
}

// A lower bound on rho_s of a partition from its key-shard masses alone (each rank meets every key
// shard of its group once, so a group's ring time is at least its heaviest key shard).
double key_shard_bound(const MaskStats::Data& stats, const Partition& p) {
  if (stats.kept == 0) return 1.0;
  double heaviest = 0;
  for (int g = 0; g < p.grid.ulysses; ++g) {
    const std::vector<double> column = plan::column_mass(stats, p.heads_of(g));
    std::vector<double> shard(p.grid.ring, 0.0);
    for (size_t j = 0; j < column.size(); ++j) shard[p.k_shard[g][j]] += column[j];
    heaviest = std::max(heaviest, *std::max_element(shard.begin(), shard.end()));
  }
  return heaviest * p.grid.ranks() / double(stats.kept);
}

// Our head groups: a group exceeds the even split only when that saves more time than the extra
// head costs, unless the heads' imbalance would then break our bound (max(1.05, 1.02 LB), with
// 1% left for the ring level), which takes precedence.
std::vector<int> ours_head_assignment(const MaskStats::Data& stats, Grid grid,
                                      const CostModel& cost) {
  const int U = grid.ulysses;
  if (U <= 1) return std::vector<int>(stats.kept_per_head.size(), 0);
  const double extra = cost.extra_head_blocks(grid, stats.mask->geometry().seq_q);
  std::vector<int> groups = plan::balanced_head_groups(stats.kept_per_head, U, extra);
  if (extra <= 0 || stats.kept == 0) return groups;
  std::vector<double> load(U, 0.0);
  for (size_t h = 0; h < groups.size(); ++h) load[groups[h]] += double(stats.kept_per_head[h]);
  const double ratio = U * *std::max_element(load.begin(), load.end()) / double(stats.kept);
  const double bound = std::max(1.05, 1.02 * head_lower_bound(stats, U)) / 1.01;
  return ratio <= bound ? groups : plan::balanced_head_groups(stats.kept_per_head, U, 0.0);
}

// Our head groups with every block at home, and how far each group needs balancing.
struct OursStart {
  Partition partition;
  std::vector<std::vector<std::vector<double>>> home_work;  // [group]: W with blocks at home
  std::vector<double> home_time;
  double goal = 0;  // each group may take this long
};

OursStart ours_start(const MaskStats::Data& stats, Grid grid, const std::vector<int>& ours) {
  const BlockMask& mask = *stats.mask;
  OursStart start;
  Partition& p = start.partition;
  p = Partition::contiguous(grid, mask.heads(), mask.q_blocks(), mask.k_blocks());
  p.head_group = ours;
  std::vector<double> group_total(grid.ulysses, 0.0);
  for (int h = 0; h < mask.heads(); ++h) group_total[p.head_group[h]] += stats.kept_per_head[h];
  const double total = double(stats.kept);
  const double heaviest = *std::max_element(group_total.begin(), group_total.end());
  const double head_ratio = total > 0 ? grid.ulysses * heaviest / total : 1.0;
  // Each group may take as long as the heaviest group would if perfectly balanced, plus a little:
  // lighter groups keep more blocks at home.
  start.goal = std::max(1.0, head_ratio) * 1.004 * total / grid.ranks();
  for (int g = 0; g < grid.ulysses; ++g) {
    start.home_work.push_back(plan::home_work(stats, p.heads_of(g), grid.ring));
    start.home_time.push_back(plan::ring_time(start.home_work.back()));
  }
  return start;
}

// Per group, the key shards it gets if it is balanced (home when its home time already meets the
// goal: then it is never balanced).
std::vector<std::vector<int>> ours_key_shards(const MaskStats::Data& stats,
                                              const OursStart& start) {
  const Grid grid = start.partition.grid;
  std::vector<std::vector<int>> key_shards(grid.ulysses);
  // Groups are independent (each reads its own heads' column counts).
  plan::parallel_for(grid.ulysses, mask_words(stats) >= plan::kThreadedWords, [&](int g) {
    key_shards[g] = start.home_time[g] > start.goal
                        ? plan::balanced_key_shards(stats, start.partition.heads_of(g), grid.ring)
                        : start.partition.k_shard[g];
  });
  return key_shards;
}

// `sets_of_group`: the rows of each of our head groups, counted per `key_shards` (unused when
// grid.ring == 1).
Partition dbsp_partition(const MaskStats::Data& stats, OursStart start,
                         const PlannerOptions& options,
                         const std::vector<plan::HeadSets>& sets_of_group,
                         const std::vector<std::vector<int>>& key_shards,
                         std::vector<std::vector<std::vector<double>>>& work) {
  Partition& p = start.partition;
  const Grid grid = p.grid;
  work = start.home_work;
  if (grid.ring == 1) return std::move(p);
  // The slowest group sets rho_s: groups are balanced slowest first, and each later one only down
  // to the time the slower ones reached (fewer passes, fewer moved blocks, same rho_s).
  std::vector<int> order(grid.ulysses);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return start.home_time[a] > start.home_time[b]; });
  double reached = start.goal;
  for (int g : order) {
    plan::RingAssignment ring =
        plan::balance_ring(stats, sets_of_group[g], grid.ring, std::move(start.home_work[g]),
                           key_shards[g], reached, options.search_rounds);
    reached = std::max(reached, ring.time);
    p.q_shard[g] = std::move(ring.q_shard);
    p.k_shard[g] = std::move(ring.k_shard);
    work[g] = std::move(ring.work);
  }
  return std::move(p);
}

LayerPlan plan_grid(const MaskStats& stats, Grid grid, Policy policy, const PlannerOptions& options,
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
    case Policy::paper: {
      if (grid.ring == 1) {
        plan.partition = plan::paper_partition(d, grid, options.reward, {});
        report = plan::evaluate(d, plan.partition);
        break;
      }
      // Row totals (the paper's row weights) come from one "shard" of all key blocks.
      const std::vector<int> heads = plan::paper_head_assignment(d, grid.ulysses);
      const SharedRows rows = shared_rows(d, heads, heads, grid.ulysses, 1);
      plan.partition = plan::paper_partition(d, grid, options.reward, rows.all);
      report = *report_from_rows(d, plan.partition, rows.of_first);
      break;
    }
    case Policy::dbsp: {
      // Our head groups and the paper's (whose partition is a fallback candidate below) share one
      // pass over the mask when they differ in few heads (each extra head set costs a little);
      // otherwise the paper's groups are read only if its partition gets scored.
      const std::vector<int> ours = ours_head_assignment(d, grid, cost);
      const std::vector<int> papers = plan::paper_head_assignment(d, grid.ulysses);
      std::vector<bool> pair_seen(static_cast<size_t>(grid.ulysses) * grid.ulysses, false);
      int sets = 0;
      for (size_t h = 0; h < ours.size(); ++h) {
        const size_t pair = static_cast<size_t>(ours[h]) * grid.ulysses + papers[h];
        sets += !pair_seen[pair];
        pair_seen[pair] = true;
      }
      const bool share = sets <= 2 * grid.ulysses;
      // Our groups' key shards come from the statistics alone, so that the rows are counted per
      // those shards while they are built.
      OursStart start = ours_start(d, grid, ours);
      SharedRows rows;
      std::vector<std::vector<int>> key_shards;
      if (grid.ring > 1) {
        key_shards = ours_key_shards(d, start);
        rows = shared_rows(d, ours, share ? papers : ours, grid.ulysses, grid.ring, &key_shards);
      }
      std::vector<std::vector<std::vector<double>>> work;
      plan.partition =
          dbsp_partition(d, std::move(start), options, rows.of_first, key_shards, work);
      report = imbalance_from_work(grid, std::move(work));
      // Never worse than not balancing, nor than the paper's row/column greedy (which can win by
      // a hair on smooth masks, at the price of moving most blocks).
      auto consider = [&](Partition candidate, ImbalanceReport candidate_report) {
        if (candidate_report.ratio < report.ratio - 1e-12) {
          plan.partition = std::move(candidate);
          report = std::move(candidate_report);
        }
      };
      Partition fixed = Partition::contiguous(grid, mask.heads(), mask.q_blocks(), mask.k_blocks());
      ImbalanceReport fixed_report = plan::evaluate(d, fixed);
      consider(std::move(fixed), std::move(fixed_report));
      if (grid.ring > 1 && report.ratio > std::max(1.0, plan.lower_bound) * 1.001) {
        // Scored only when its bound (from its key shards alone) leaves it a chance.
        Partition paper = plan::paper_key_partition(d, grid, options.reward);
        if (key_shard_bound(d, paper) < report.ratio - 1e-12) {
          plan::paper_place_queries(d, options.reward, rows.all, paper);
          SharedRows paper_rows;
          if (!share) paper_rows = shared_rows(d, papers, papers, grid.ulysses, 0);
          std::optional<ImbalanceReport> paper_report = report_from_rows(
              d, paper, share ? rows.of_second : paper_rows.of_first, report.ratio);
          if (paper_report) consider(std::move(paper), std::move(*paper_report));
        }
      }
      if (grid.ring == 1 && grid.ulysses > 1 && options.share_heads && report.ratio > 1.0 + 1e-9) {
        // A share must gain more than the extra K and V cost the lighter group. The head
        // chunks' pipeline hides most of that transfer, so half of it is charged.
        const double least_gain =
            std::max(0.005 * double(d.kept) / grid.ranks(),
                     0.5 * cost.shared_head_blocks(grid, mask.geometry().seq_k));
        Partition shared = plan.partition;
        shared.head_splits = plan::shared_head_splits(mask, d.kept_per_head, shared.head_group,
                                                      grid.ulysses, least_gain);
        if (!shared.head_splits.empty()) {
          ImbalanceReport shared_report = plan::evaluate(d, shared);
          consider(std::move(shared), std::move(shared_report));
        }
      }
      break;
    }
  }
  if (grid.ulysses > 1 && grid.ring == 1) {
    plan.partition.head_order = pipeline_head_order(plan.partition, d.kept_per_head);
  }
  plan.imbalance_ratio = report.ratio;
  plan.moved_blocks = plan.partition.moved_blocks();
  plan.predicted =
      cost.predict(grid, plan.imbalance_ratio, d.kept, mask.heads(), mask.geometry().seq_q,
                   plan.moved_blocks, plan.partition.max_group_heads());
  return plan;
}

}  // namespace

LayerPlan make_plan(const MaskStats& stats, Grid grid, Policy policy, const PlannerOptions& options,
                    const CostModel& cost) {
  LayerPlan plan;
  plan::with_threads(mask_words(stats.data()) >= plan::kThreadedWords,
                     [&] { plan = plan_grid(stats, grid, policy, options, cost); });
  return plan;
}

StrategyChoice choose_strategy(const MaskStats& stats, Policy policy, const PlannerOptions& options,
                               const CostModel& cost) {
  // The grids' plans are independent and only read the statistics (nothing in them is cached or
  // mutable), so they are planned on OpenMP's threads, each into its own slot: the candidates,
  // their order and the pick are those of the serial loop.
  const std::vector<Grid> grids = factorizations(stats.ranks());
  StrategyChoice choice;
  choice.candidates.resize(grids.size());
  plan::parallel_for(static_cast<int>(grids.size()), true, [&](int i) {
    choice.candidates[i] = make_plan(stats, grids[i], policy, options, cost);
  });
  const auto best = std::min_element(choice.candidates.begin(), choice.candidates.end(),
                                     [](const LayerPlan& a, const LayerPlan& b) {
                                       return a.predicted.total_ms < b.predicted.total_ms;
                                     });
  choice.best = *best;
  return choice;
}

double predicted_floor(const MaskStats& stats, Grid grid, Policy policy,
                       const PlannerOptions& options, const CostModel& cost) {
  const MaskStats::Data& d = stats.data();
  require(grid.ranks() == d.ranks, "predicted_floor: grid ", grid.name(), " has ", grid.ranks(),
          " ranks but the mask statistics were built for ", d.ranks);
  // rho_s is at least the head lower bound while heads stay whole; only ours may share them.
  const bool may_share = policy == Policy::dbsp && options.share_heads && grid.ring == 1;
  const double ratio = may_share ? 1.0 : head_lower_bound(d, grid.ulysses);
  const int heads = d.mask->heads();
  const int even_split = (heads + grid.ulysses - 1) / grid.ulysses;  // no group holds fewer
  // predict() grows with rho_s, moved blocks and the largest group's heads.
  return cost
      .predict(grid, ratio, d.kept, heads, d.mask->geometry().seq_q, 0.0, std::max(1, even_split))
      .total_ms;
}

LayerPlan fastest_plan(const MaskStats& stats, Policy policy, const PlannerOptions& options,
                       const CostModel& cost) {
  const std::vector<Grid> grids = factorizations(stats.ranks());
  const int n = static_cast<int>(grids.size());
  std::vector<double> floor(grids.size());
  for (int i = 0; i < n; ++i) floor[i] = predicted_floor(stats, grids[i], policy, options, cost);
  std::vector<int> order(grids.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return floor[a] < floor[b]; });
  // Grids start in the order of their floors, side by side as threads free up, and one whose
  // floor exceeds the best total planned by then is skipped. A skipped grid cannot win whichever
  // grids finished first, so the pick does not depend on the threads' timing. A floor within
  // rounding of the best is planned: its plan might tie, and ties go to the earlier
  // factorization, as in choose_strategy.
  std::vector<std::optional<LayerPlan>> plans(grids.size());
  std::atomic<double> best_total{std::numeric_limits<double>::infinity()};
  auto plan_unless_beaten = [&](const std::vector<int>& grids_in_order) {
    plan::parallel_for(static_cast<int>(grids_in_order.size()), true, [&](int k) {
      const int i = grids_in_order[k];
      if (floor[i] > best_total.load() * (1 + 1e-9)) return;
      plans[i] = make_plan(stats, grids[i], policy, options, cost);
      double best = best_total.load();
      while (plans[i]->predicted.total_ms < best &&
             !best_total.compare_exchange_weak(best, plans[i]->predicted.total_ms)) {
      }
    });
  };
  // With a thread per grid every grid would start before any finished, and the slowest to plan
  // are the grids of many ring steps, which rarely win: the grids whose floor is far above the
  // lowest start only once the others are done, and are then mostly skipped. On Wan2.1-720p
  // layers at P = 4 to 64 (the emulations' link) the best plan lies within 1.47x of the lowest
  // floor, and this defers about half the grids at P = 32.
  constexpr double kDeferredAbove = 1.5;
  std::vector<int> first, deferred;
  for (int i : order)
    (floor[i] <= kDeferredAbove * floor[order[0]] ? first : deferred).push_back(i);
  plan_unless_beaten(first);
  plan_unless_beaten(deferred);
  int best = -1;
  for (int i = 0; i < n; ++i) {
    if (plans[i] && (best < 0 || plans[i]->predicted.total_ms < plans[best]->predicted.total_ms)) {
      best = i;
    }
  }
  return std::move(*plans[best]);
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
  std::optional<LayerPlan>& kept = plans_[layer];
  Lookup lookup{nullptr, false, 0.0};
  // One team of threads for the statistics and the reuse check or the plans.
  const size_t mask_words =
      static_cast<size_t>(mask.heads()) * mask.q_blocks() * mask.words_per_row();
  plan::with_threads(mask_words >= plan::kThreadedWords, [&] {
    MaskStats stats(mask, ranks_);
    if (kept && kept->partition.heads == mask.heads() &&
        kept->partition.q_blocks == mask.q_blocks() &&
        kept->partition.k_blocks == mask.k_blocks()) {
      const double ratio = plan::evaluate(stats.data(), kept->partition).ratio;
      // P_s is measured against what any plan could reach on this mask: when one head alone
      // exceeds its group's share, re-planning cannot beat the head lower bound.
      const double floor = head_lower_bound(stats.data(), kept->partition.grid.ulysses);
      if (policy_ == Policy::static_split || ratio <= options_.reuse_threshold * floor) {
        lookup = {&*kept, false, ratio};
        return;
      }
    }
    kept = grid_ ? make_plan(stats, *grid_, policy_, options_, cost_)
                 : fastest_plan(stats, policy_, options_, cost_);
    lookup = {&*kept, true, kept->imbalance_ratio};
  });
  replans_ += lookup.replanned;
  return lookup;
}

}  // namespace dbsp
