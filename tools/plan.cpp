// `dbsp plan`: per layer, rho_s / moved blocks / predicted time of every U x R under each policy,
// the chosen strategy, and a summary; --json follows the contract in docs/cli.md.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>

#include "commands.hpp"
#include "cost_options.hpp"
#include "dbsp/planner.hpp"
#include "mask_source.hpp"
#include "plan_json.hpp"

namespace dbsp::cli {
namespace {

struct PlanOptions {
  MaskSourceOptions source;
  int gpus = 8;
  bool json = false;
  int layers = 0;  // 0: all
  int step = -1;   // -1: every step of a file, step 0 of a workload
  PlannerOptions planner;
  CostModel cost;
};

const Policy kPolicies[] = {Policy::static_split, Policy::paper, Policy::dbsp};

int run_plan(const PlanOptions& o) {
  const MaskSource source(o.source);
  std::vector<std::pair<int, int>> entries;  // (step, layer)
  const int layer_count = o.layers > 0 ? std::min(o.layers, source.layers()) : source.layers();
  if (o.step >= 0) {
    for (int l = 0; l < layer_count; ++l) entries.emplace_back(o.step, l);
  } else {
    const int steps = source.from_file() ? source.steps() : 1;
    for (int s = 0; s < steps; ++s)
      for (int l = 0; l < layer_count; ++l) entries.emplace_back(s, l);
  }
  nlohmann::json layers_json = nlohmann::json::array();
  // Summary: per policy and grid, sum of rho and of predicted time; per policy, time with the
  // per-layer choice; planner time.
  std::map<std::pair<int, std::string>, std::pair<double, double>> per_grid;
  std::map<int, double> chosen_ms, planner_ms;
  const bool text = !o.json;
  for (auto [step, layer] : entries) {
    const BlockMask mask = source.mask(step, layer);
    nlohmann::json strategies = nlohmann::json::array();
    LayerPlan best;
    best.predicted.total_ms = 1e300;
    if (text) {
      std::printf("\nstep %d layer %d: %d heads, %d x %d blocks, density %.3f\n", step, layer,
                  mask.heads(), mask.q_blocks(), mask.k_blocks(), mask.density());
      std::printf("  %-6s | %-26s | %-26s | %-26s\n", "grid", "static: rho moved ms",
                  "dbsp-paper: rho moved ms", "dbsp: rho moved ms");
    }
    std::map<int, LayerPlan> policy_best;
    std::map<std::string, std::vector<LayerPlan>> rows;
    for (Policy policy : kPolicies) {
      const auto t0 = std::chrono::steady_clock::now();
      const MaskStats stats(mask, o.gpus);
      const StrategyChoice choice = choose_strategy(stats, policy, o.planner, o.cost);
      planner_ms[int(policy)] +=
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      policy_best[int(policy)] = choice.best;
      chosen_ms[int(policy)] += choice.best.predicted.total_ms;
      for (const LayerPlan& plan : choice.candidates) {
        strategies.push_back(strategy_json(plan));
        rows[plan.partition.grid.name()].push_back(plan);
        auto& acc = per_grid[{int(policy), plan.partition.grid.name()}];
        acc.first += plan.imbalance_ratio;
        acc.second += plan.predicted.total_ms;
        if (plan.predicted.total_ms < best.predicted.total_ms) best = plan;
      }
    }
    if (text) {
      for (const Grid& grid : factorizations(o.gpus)) {
        std::printf("  %-6s", grid.name().c_str());
        for (const LayerPlan& p : rows[grid.name()]) {
          std::printf(" | %6.3f %7.0f %9.3f  ", p.imbalance_ratio, p.moved_blocks,
                      p.predicted.total_ms);
        }
        std::printf("\n");
      }
      std::printf("  chosen: %s %s, rho %.3f, %.3f ms predicted (LB %.3f)\n",
                  to_string(best.policy), best.partition.grid.name().c_str(), best.imbalance_ratio,
                  best.predicted.total_ms, best.lower_bound);
    }
    layers_json.push_back({{"step", step},
                           {"layer", layer},
                           {"heads", mask.heads()},
                           {"q_blocks", mask.q_blocks()},
                           {"k_blocks", mask.k_blocks()},
                           {"density", mask.density()},
                           {"strategies", strategies},
                           {"chosen", strategy_json(best)}});
  }
  if (o.json) {
    nlohmann::json out = {{"source", source.name()}, {"gpus", o.gpus}};
    if (entries.size() == 1) {
      out.update(layers_json[0]);
    } else {
      out["layers"] = layers_json;
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  const double n = double(entries.size());
  std::printf("\nsummary over %zu layer(s), %d GPUs (mean rho_s / total predicted ms)\n",
              entries.size(), o.gpus);
  std::printf("  %-6s | %-20s | %-20s | %-20s\n", "grid", "static", "dbsp-paper", "dbsp");
  for (const Grid& grid : factorizations(o.gpus)) {
    std::printf("  %-6s", grid.name().c_str());
    for (Policy policy : kPolicies) {
      const auto& acc = per_grid[{int(policy), grid.name()}];
      std::printf(" | %6.3f %12.2f ", acc.first / n, acc.second);
    }
    std::printf("\n");
  }
  std::printf("  %-6s", "best");
  for (Policy policy : kPolicies) std::printf(" | %6s %12.2f ", "", chosen_ms[int(policy)]);
  std::printf("   (U x R chosen per layer)\n");
  std::printf(
      "  planner time per layer (all %zu grids, stats included): static %.2f ms, "
      "dbsp-paper %.2f ms, dbsp %.2f ms\n",
      factorizations(o.gpus).size(), planner_ms[0] / n, planner_ms[1] / n, planner_ms[2] / n);
  return 0;
}

}  // namespace

void register_plan(CLI::App& app) {
  auto options = std::make_shared<PlanOptions>();
  CLI::App* command = app.add_subcommand("plan", "balance one or more layers' masks over P GPUs");
  options->source.add_to(*command);
  command->add_option("--gpus", options->gpus, "number of ranks P")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  command->add_flag("--json", options->json, "print the JSON contract instead of tables");
  command->add_option("--layers", options->layers, "plan only the first N layers");
  command->add_option("--step", options->step,
                      "denoising step (default: 0, or every step of a file)");
  command->add_option("--reward", options->planner.reward, "paper's home-shard reward R_b")
      ->capture_default_str();
  add_cost_options(*command, options->cost);
  command->callback([options] {
    const int rc = run_plan(*options);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace dbsp::cli
