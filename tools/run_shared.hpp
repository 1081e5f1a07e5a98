// What `dbsp run`'s two modes share: the options, the run's extent and each layer call's problem
// and fine mask. run_ranks (run_ranks.cpp) runs real ranks under mpirun; run_emulated
// (run_emulated.cpp) runs virtual ranks in one process; run.cpp parses the options.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "dbsp/estimate.hpp"
#include "dbsp/fine_mask.hpp"
#include "dbsp/planner.hpp"
#include "dbsp/sp_attention.hpp"
#include "dbsp/workload.hpp"
#include "mask_source.hpp"

namespace dbsp::cli {

constexpr double kMB = 1e6;

struct RunOptions {
  MaskSourceOptions source;
  std::string strategy = "dbsp";
  int layers = 0;  // 0: every layer of the source
  int steps = 1;
  std::string backend = "cpu";
  bool check = false;
  int check_blocks = 0;  // 0: every query block of the shard
  double tolerance = 0;  // 0: default_tolerance()
  double timeout = 60;
  int head_dim = 0;  // 0: the workload's (64 for mask files)
  bool send_all = false;
  int ring_reserved_sms = SpOptions{}.ring_reserved_sms;
  int head_chunks = SpOptions{}.head_chunks;
  bool no_ring_overlap = false;
  bool no_finite_check = false;  // SpOptions::check_finite off
  bool no_split_rows = false;    // SpOptions::split_long_rows off
  int split_step_heads = SpOptions{}.split_step_heads;
  int batch = 1;            // batch elements per layer call, each with its own inputs
  int emulate = 0;          // > 0: this many virtual ranks in one process, no MPI
  bool rank_times = false;  // --emulate: per-rank measured against predicted work
  double beside_slowdown = LinkModel{}.beside_slowdown;  // --emulate: kernels beside a transfer
  bool copy_rate_given = false;  // --copy-gbps on the command line: --emulate charges it too
  int warmup = 1;         // untimed calls per grid before the run (connections, kernel loading)
  bool estimate = false;  // masks estimated from the run's Q and K (the source gives the shapes)
  bool uniform_inputs = false;  // --estimate on a workload: seeded Q and K, not the workload's
  double tau = EstimateOptions{}.tau;
  // --fine-keep F: each layer's block mask thinned to a fine mask keeping about F of every kept
  // block's keys (thin_blocks; host and device paths).
  bool fine = false;
  double fine_keep = 1.0;
  // The next layer call's host work (hash, plan, schedule) on a background thread while this one
  // runs (SpAttention::plan_ahead); with --emulate, host work hidden behind the previous call.
  bool plan_ahead = false;
  PlannerOptions planner;
  CostModel cost;
};

// What the run covers: layers and steps of the source, and the head dimension (the workload's,
// 64 for mask files, unless given).
struct RunExtent {
  int layers = 0, steps = 0, head_dim = 0;
  RunExtent(const RunOptions& o, const MaskSource& source)
      : layers(o.layers > 0 ? std::min(o.layers, source.layers()) : source.layers()),
        steps(std::max(1, std::min(o.steps, source.steps()))),
        head_dim(o.head_dim > 0       ? o.head_dim
                 : source.from_file() ? 64
                                      : model_preset(o.source.workload).head_dim) {}
};

// One layer call's problem for a mask.
inline SpProblem layer_problem(const BlockMask& mask, int head_dim, int batch = 1) {
  SpProblem problem;
  problem.heads = mask.heads();
  problem.head_dim = head_dim;
  problem.geometry = mask.geometry();
  problem.batch = batch;
  return problem;
}

// --fine-keep F: the fine mask of (step, layer), the same on every rank (seeded by the run's seed,
// step and layer) and in --emulate.
inline FineMask layer_fine_mask(const RunOptions& o, const BlockMask& mask, int step, int layer) {
  return thin_blocks(mask, o.fine_keep,
                     o.source.seed * 1000003u + 7919u * static_cast<uint64_t>(step) +
                         static_cast<uint64_t>(layer) + 2u);
}

int run_ranks(const RunOptions& o);
int run_emulated(const RunOptions& o);

}  // namespace dbsp::cli
