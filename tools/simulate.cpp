// `dbsp simulate`: a denoising run under each policy (static Ulysses / Ring / USP, the paper's
// db-SP and ours, both with plan reuse): predicted attention time, re-plans, measured planner time.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>

#include "commands.hpp"
#include "cost_options.hpp"
#include "dbsp/planner.hpp"
#include "mask_source.hpp"

namespace dbsp::cli {
namespace {

struct SimulateOptions {
  MaskSourceOptions source;
  int gpus = 8;
  int steps = 0;   // 0: all
  int layers = 0;  // 0: all
  PlannerOptions planner;
  CostModel cost;
};

struct Run {
  std::string name;
  PlanCache cache;
  double predicted_ms = 0;
  double planner_ms = 0;
  double ratio_sum = 0;
};

void progress(int done, int total) {
  if (!isatty(STDERR_FILENO)) return;
  const int width = 40, filled = total > 0 ? done * width / total : width;
  std::fprintf(stderr, "\r  [%.*s%*s] %d/%d", filled, "########################################",
               width - filled, "", done, total);
  if (done == total) std::fprintf(stderr, "\n");
}

int run_simulate(const SimulateOptions& o) {
  const MaskSource source(o.source);
  const int steps = o.steps > 0 ? std::min(o.steps, source.steps()) : source.steps();
  const int layers = o.layers > 0 ? std::min(o.layers, source.layers()) : source.layers();
  std::vector<std::unique_ptr<Run>> runs;
  for (const Grid& grid : factorizations(o.gpus)) {
    const std::string name = grid.ring == 1      ? "ulysses " + grid.name()
                             : grid.ulysses == 1 ? "ring " + grid.name()
                                                 : "usp " + grid.name();
    runs.push_back(std::make_unique<Run>(
        Run{name, PlanCache(layers, o.gpus, Policy::static_split, o.planner, o.cost, grid)}));
  }
  runs.push_back(
      std::make_unique<Run>(Run{"dbsp-paper (per-layer U x R)",
                                PlanCache(layers, o.gpus, Policy::paper, o.planner, o.cost)}));
  runs.push_back(std::make_unique<Run>(
      Run{"dbsp (per-layer U x R)", PlanCache(layers, o.gpus, Policy::dbsp, o.planner, o.cost)}));
  std::printf("simulate %s on %d GPUs: %d steps x %d layers, P_s %.2f\n", source.name().c_str(),
              o.gpus, steps, layers, o.planner.reuse_threshold);
  for (int step = 0; step < steps; ++step) {
    for (int layer = 0; layer < layers; ++layer) {
      const BlockMask mask = source.mask(step, layer);
      for (auto& run : runs) {
        const auto t0 = std::chrono::steady_clock::now();
        const PlanCache::Lookup lookup = run->cache.plan_for(layer, mask);
        run->planner_ms +=
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count();
        // The kept plan's time on this mask: its own prediction rescaled by the current rho_s.
        const LayerPlan& plan = *lookup.plan;
        const auto b = o.cost.predict(plan.partition.grid, lookup.current_ratio, mask.kept(),
                                      mask.heads(), mask.geometry().seq_q, plan.moved_blocks,
                                      plan.partition.max_group_heads());
        run->predicted_ms += b.total_ms;
        run->ratio_sum += lookup.current_ratio;
      }
      progress(step * layers + layer + 1, steps * layers);
    }
  }
  double best_static = 1e300;
  for (auto& run : runs)
    if (run->name.rfind("dbsp", 0) != 0) best_static = std::min(best_static, run->predicted_ms);
  const double n = double(steps) * layers;
  std::printf("\n  %-30s %12s %10s %9s %12s %14s\n", "policy", "attn ms", "vs best", "mean rho",
              "re-plans", "planner ms");
  for (auto& run : runs) {
    std::printf("  %-30s %12.2f %9.3fx %9.3f %12d %14.2f\n", run->name.c_str(), run->predicted_ms,
                best_static / run->predicted_ms, run->ratio_sum / n, run->cache.replans(),
                run->planner_ms);
  }
  std::printf(
      "  (attention time predicted by the cost model; 'vs best' = best static time / this;"
      " planner ms = statistics + planning + reuse checks, measured)\n");
  return 0;
}

}  // namespace

void register_simulate(CLI::App& app) {
  auto options = std::make_shared<SimulateOptions>();
  CLI::App* command = app.add_subcommand("simulate", "a denoising run under each policy");
  options->source.add_to(*command);
  command->add_option("--gpus", options->gpus, "number of ranks P")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  command->add_option("--steps", options->steps, "denoising steps (default: all)");
  command->add_option("--layers", options->layers, "layers (default: all)");
  command->add_option("--reuse-threshold", options->planner.reuse_threshold, "P_s")
      ->capture_default_str();
  add_cost_options(*command, options->cost);
  command->callback([options] { run_simulate(*options); });
}

}  // namespace dbsp::cli
