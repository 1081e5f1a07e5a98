// `dbsp run --emulate P`: P virtual ranks in one process (SpEmulator), every strategy compared on
// the same masks against the best static U x R, with the ceiling of any schedule of these kernels.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "dbsp/error.hpp"
#include "dbsp/fine_mask.hpp"
#include "dbsp/imbalance.hpp"
#include "dbsp/planner.hpp"
#include "dbsp/sp_attention.hpp"
#include "mask_source.hpp"
#include "run_shared.hpp"

namespace dbsp::cli {

namespace {

// --rank-times: each rank's measured compute and its group's predicted work (kept blocks), both
// over their means across ranks, with the group's head count: where a grid without a ring is
// measured less balanced than predicted, which ranks make the difference. With head chunks, each
// chunk's all-to-alls in and out, and when each output leaves after which rank's kernel: what
// keeps the all-to-all exposed.
void print_rank_times(const BlockMask& mask, const Partition& partition, const EmulatedLayer& e) {
  const ImbalanceReport report = imbalance_report(mask, partition);
  double mean = 0;
  for (double c : e.rank_compute_ms) mean += c / static_cast<double>(e.rank_compute_ms.size());
  std::printf("  ranks (measured / mean, predicted / mean, heads):");
  for (int g = 0; g < partition.grid.ulysses; ++g) {
    const double predicted =
        report.mean_rank_work > 0 ? report.group_time[g] / report.mean_rank_work : 1.0;
    std::printf(" %.3f/%.3f/%zu", mean > 0 ? e.rank_compute_ms[g] / mean : 1.0, predicted,
                partition.heads_of(g).size());
  }
  std::printf("\n");
  if (!e.chunk_in_ms.empty()) {
    std::printf("  head chunks' all-to-alls in / out (ms, slowest rank):");
    for (size_t c = 0; c < e.chunk_in_ms.size(); ++c) {
      std::printf(" %.3f/%.3f", e.chunk_in_ms[c], e.chunk_out_ms[c]);
    }
    std::printf("; outputs leave at (ms, after rank):");
    for (size_t c = 0; c < e.chunk_out_start_ms.size(); ++c) {
      std::printf(" %.3f/%d", e.chunk_out_start_ms[c], e.chunk_out_after_rank[c]);
    }
    std::printf("\n");
  }
}

// --rank-times on a grid with a ring: per rank (g.r, its heads x query blocks) each step's
// kernel time and kept blocks, the data to fit a step's time to its blocks and rows where the
// measured rho_s departs from the predicted one.
void print_ring_step_times(const Partition& partition, const EmulatedLayer& e) {
  const Grid grid = partition.grid;
  std::printf("  rank steps (g.r heads*q_blocks: ms/kept per step):");
  for (int g = 0; g < grid.ulysses; ++g) {
    const size_t heads = partition.heads_of(g).size();
    for (int r = 0; r < grid.ring; ++r) {
      const int p = grid_rank(g, r, grid);
      std::printf(" %d.%d %zu*%zu:", g, r, heads, partition.q_blocks_of(g, r).size());
      for (int t = 0; t < grid.ring; ++t) {
        std::printf("%s%.3f/%lld", t == 0 ? "" : ",", e.rank_step_ms[p][t],
                    static_cast<long long>(e.rank_step_kept[p][t]));
      }
    }
  }
  std::printf("\n");
}

}  // namespace

// --emulate P: P virtual ranks in this process. Every strategy (or the one asked for) runs each
// layer through SpEmulator: the real routing, each virtual rank's kernels timed on this machine,
// transfers charged from the link options; prints measured vs predicted imbalance and the speedup
// over the best static U x R. With --fine-keep every strategy plans on the fine mask's covering
// blocks and the kernels run the local fine masks, as SpAttention's fine forward does.
int run_emulated(const RunOptions& o) {
  require(o.backend == "cpu" || o.backend == "cuda", "--backend: expected cpu or cuda, got '",
          o.backend, "'");
  const int P = o.emulate;
  const MaskSource source(o.source);
  const auto [layers, steps, head_dim] = RunExtent(o, source);
  // A comma-separated list, each item a strategy or `all` (every static grid, dbsp-paper, dbsp):
  // e.g. all,dbsp:16x1,dbsp:8x2 adds db-SP held to each grid beside its own pick.
  std::vector<Strategy> strategies;
  for (size_t begin = 0; begin <= o.strategy.size();) {
    const size_t comma = std::min(o.strategy.find(',', begin), o.strategy.size());
    const std::string item = o.strategy.substr(begin, comma - begin);
    require(!item.empty(), "--strategy '", o.strategy, "': an empty item in the list");
    if (item == "all") {
      for (Grid grid : factorizations(P)) strategies.push_back({Policy::static_split, grid});
      strategies.push_back({Policy::paper, std::nullopt});
      strategies.push_back({Policy::dbsp, std::nullopt});
    } else {
      strategies.push_back(parse_strategy(item, P));
    }
    begin = comma + 1;
  }
  const LinkModel link{o.cost.link_gbytes_per_s, o.cost.link_latency_us, o.beside_slowdown,
                       o.copy_rate_given ? std::optional(o.cost.copy_gbytes_per_s) : std::nullopt};
  SpEmulator emulator(P, o.backend == "cuda" ? EmulationDevice::cuda : EmulationDevice::cpu, link,
                      {.mask_aware = !o.send_all,
                       .measure_idle = false,
                       .ring_reserved_sms = o.ring_reserved_sms,
                       .head_chunks = o.head_chunks,
                       .split_long_rows = !o.no_split_rows,
                       .split_step_heads = o.split_step_heads});
  std::vector<PlanCache> caches;
  for (const Strategy& s : strategies) {
    PlannerOptions planner = o.planner;
    planner.share_heads = planner.share_heads || s.share_heads;
    caches.emplace_back(layers, P, s.policy, planner, o.cost, s.grid);
  }
  std::vector<double> total_ms(strategies.size(), 0.0), compute_sum(strategies.size(), 0.0);
  // Host work: the slowest rank's schedule build (inside total_ms) and the planner (plan or reuse
  // check, every rank runs it; added to total_ms in the comparison).
  std::vector<double> setup_sum(strategies.size(), 0.0), plan_sum(strategies.size(), 0.0);
  // --plan-ahead: a call's host work (plan and setup) runs beside the call before it, so only what
  // outlasts that call is charged (the first call pays all of it).
  std::vector<double> previous_call_ms(strategies.size(), 0.0);
  std::vector<double> predicted_sum(strategies.size(), 0.0), ring_ratio_sum(strategies.size(), 0.0);
  // The ceiling of any schedule of these kernels: per layer call, the lowest mean rank compute
  // over the strategies run (perfect balance, communication free), summed.
  double ceiling_ms = 0;
  std::printf(
      "dbsp run --emulate %d: %s, %d layers x %d steps, kernels on %s, link %.1f GB/s "
      "+ %.1f us, ring kernels beside a transfer +%.0f%%, staging copies %s%s\n",
      P, source.name().c_str(), layers, steps, o.backend.c_str(), link.gbytes_per_s,
      link.latency_us, 100 * link.beside_slowdown,
      link.copy_gbytes_per_s ? (std::to_string(*link.copy_gbytes_per_s) + " GB/s").c_str()
                             : "timed",
      o.send_all ? ", mask-aware communication off" : "");
  const int chunks = o.head_chunks > 0 ? o.head_chunks : P > 1 ? kAutoHeadChunks : 1;
  if (chunks > 1) {
    std::printf(
        "grids without a ring run their heads in %d pipelined chunks (each chunk's kernel timed, "
        "+%.0f%% beside the other chunks' all-to-alls; a2a_ms is the exposed part)\n",
        chunks, 100 * link.beside_slowdown);
  }
  if (o.fine) {
    std::printf(
        "fine (M x 1) masks: in every kept block of every row a seeded %.3g of its keys (at least "
        "one); planned on the covering blocks, rho_pred is rho_s of the kept slices\n",
        o.fine_keep);
  }
  double fine_density_sum = 0;  // --fine-keep: kept slices' densities, summed
  double staging_rate = 0;      // GB/s the staging copies are charged at
  std::printf("%4s %5s %-16s %6s %8s %8s %8s %11s %11s %8s %8s %9s %9s %9s %9s\n", "step", "layer",
              "strategy", "grid", "rho_pred", "rho_meas", "max/mean", "compute_max", "compute_avg",
              "plan_ms", "setup_ms", "a2a_ms", "ring_ms", "total_ms", "moved_MB");
  for (int step = 0; step < steps; ++step) {
    for (int layer = 0; layer < layers; ++layer) {
      const BlockMask mask = source.mask(step, layer);
      const SpProblem problem = layer_problem(mask, head_dim);
      if (staging_rate == 0) staging_rate = emulator.staging_gbytes_per_s(problem);
      std::optional<FineMask> fine;
      std::optional<BlockMask> covering;  // what the strategies plan on for a fine mask
      if (o.fine) {
        fine = layer_fine_mask(o, mask, step, layer);
        covering = fine->covering_blocks();
        fine_density_sum += fine->density();
      }
      double lowest_mean_compute = 0;
      for (size_t n = 0; n < strategies.size(); ++n) {
        const auto plan_start = std::chrono::steady_clock::now();
        const PlanCache::Lookup lookup = caches[n].plan_for(layer, fine ? *covering : mask);
        const double plan_ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - plan_start)
                .count();
        const Partition& partition = lookup.plan->partition;
        const EmulatedLayer e = fine ? emulator.run(problem, *fine, partition, static_cast<int>(n))
                                     : emulator.run(problem, mask, partition);
        const double predicted = fine ? imbalance_ratio(*fine, partition) : lookup.current_ratio;
        const double max_compute =
            *std::max_element(e.rank_compute_ms.begin(), e.rank_compute_ms.end());
        double sum = 0;
        for (double c : e.rank_compute_ms) sum += c;
        double call_ms = e.total_ms;
        if (o.plan_ahead) {
          const double exposed = std::max(0.0, plan_ms + e.setup_ms - previous_call_ms[n]);
          call_ms = e.total_ms - e.setup_ms + exposed;
          previous_call_ms[n] = call_ms;
        }
        total_ms[n] += call_ms;
        setup_sum[n] += e.setup_ms;
        plan_sum[n] += plan_ms;
        compute_sum[n] += sum;
        predicted_sum[n] += predicted;
        ring_ratio_sum[n] += e.ring_ratio;
        if (n == 0 || sum / P < lowest_mean_compute) lowest_mean_compute = sum / P;
        std::printf(
            "%4d %5d %-16s %6s %8.3f %8.3f %8.3f %11.3f %11.3f %8.3f %8.3f %9.3f %9.3f %9.3f "
            "%9.2f\n",
            step, layer, strategies[n].name().c_str(), e.grid.name().c_str(), predicted,
            e.ring_ratio, e.measured_ratio, max_compute, sum / P, plan_ms, e.setup_ms,
            e.all_to_all_ms, e.ring_ms, call_ms, e.bytes_moved / kMB);
        if (o.rank_times && e.grid.ring == 1 && !fine) print_rank_times(mask, partition, e);
        if (o.rank_times && e.grid.ring > 1) print_ring_step_times(partition, e);
      }
      ceiling_ms += lowest_mean_compute;
    }
  }
  const int entries = steps * layers;
  double best_static = 0, best_static_with_plan = 0;
  for (size_t n = 0; n < strategies.size(); ++n) {
    if (strategies[n].policy != Policy::static_split) continue;
    if (best_static == 0 || total_ms[n] < best_static) best_static = total_ms[n];
    const double with_plan = total_ms[n] + (o.plan_ahead ? 0.0 : plan_sum[n]);
    if (best_static_with_plan == 0 || with_plan < best_static_with_plan) {
      best_static_with_plan = with_plan;
    }
  }
  std::printf("\nsummary over %d layer calls (times are sums; ratios are means per layer):\n",
              entries);
  std::printf("%-16s %10s %14s %9s %9s %9s %9s %15s %15s\n", "strategy", "total_ms",
              "compute_avg_ms", "setup_ms", "plan_ms", "rho_pred", "rho_meas", "vs best static",
              "with planning");
  for (size_t n = 0; n < strategies.size(); ++n) {
    std::printf("%-16s %10.3f %14.3f %9.3f %9.3f %9.3f %9.3f", strategies[n].name().c_str(),
                total_ms[n], compute_sum[n] / P, setup_sum[n], plan_sum[n],
                predicted_sum[n] / entries, ring_ratio_sum[n] / entries);
    if (best_static > 0 && total_ms[n] > 0) {
      std::printf(" %14.3fx %14.3fx", best_static / total_ms[n],
                  best_static_with_plan / (total_ms[n] + (o.plan_ahead ? 0.0 : plan_sum[n])));
    }
    std::printf("\n");
  }
  if (o.plan_ahead) {
    std::printf(
        "total_ms (--plan-ahead): per call the host work (planner + slowest rank's schedule, "
        "measured here) that outlasts the call before it + all-to-all + ring; planning is "
        "inside it, so both columns agree\n");
  } else {
    std::printf(
        "total_ms: host setup (slowest rank's schedule, measured here) + all-to-all + ring; "
        "\"with planning\" adds each strategy's planner time (plan or reuse check) to it\n");
  }
  std::printf(
      "a2a_ms and the ring's transfers include the ranks' staging copies (pack, unpack, rows "
      "kept on the rank) at %.1f GB/s (%s)\n",
      staging_rate, link.copy_gbytes_per_s ? "--copy-gbps" : "timed on the executor's copy");
  if (o.fine) {
    std::printf(
        "fine masks: mean kept-slice (M x 1) density %.4f over %d layer calls (%.3g of each kept "
        "block's keys)\n",
        fine_density_sum / entries, entries, o.fine_keep);
  }
  if (strategies.size() > 1 && ceiling_ms > 0) {
    std::printf(
        "ceiling (per layer call the lowest mean rank compute of any strategy above: perfect "
        "balance, free communication) %10.3f ms",
        ceiling_ms);
    if (best_static > 0) std::printf(" = %.3fx of the best static", best_static / ceiling_ms);
    std::printf("\n");
  }
  return 0;
}

}  // namespace dbsp::cli
