// db-SP planning (SPEC 4): the paper's dual-level greedy, our balancer, the cost model that picks
// U x R per layer, and plan reuse across denoising steps.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dbsp/block_mask.hpp"
#include "dbsp/partition.hpp"

namespace dbsp {

enum class Policy { static_split, paper, dbsp };
const char* to_string(Policy policy);  // "static", "dbsp-paper", "dbsp"
Policy parse_policy(std::string_view text);

// Rates of the machine; the defaults were measured on an H200 and can be overridden.
struct CostModel {
  // Rates of dbsp's wgmma kernel measured on an H200 (dbsp run --emulate 8, Wan2.1-720p,
  // BENCHMARKS.md): time per kept 64 x 64 block-head at head_dim 128, and the fixed cost of one
  // (query block, head) row in one ring step (loading Q, writing O and LSE, merging). The row term
  // is what makes many ring steps of short rows slower than one long row per head.
  double us_per_block = 0.0053;
  double us_per_row_step = 0.045;
  double link_gbytes_per_s = 120.0;  // per-rank point-to-point / all-to-all bandwidth
  // Moved blocks travel as many small slabs through an extra all-to-all that nothing overlaps:
  // measured on 2 x H200 at ~20 GB/s effective (BENCHMARKS.md, runtime), a tenth of the link.
  double move_gbytes_per_s = 20.0;
  // The device executor stages what it exchanges: a rank packs what it sends into one buffer,
  // unpacks what it receives, and copies the rows it keeps (sp::device::copy_rows: 1080-1100 GB/s
  // of rows copied on an H200, timed by dbsp run --emulate, BENCHMARKS.md session 9).
  double copy_gbytes_per_s = 1100.0;
  double link_latency_us = 15.0;  // per collective or ring step
  int head_dim = 128;
  int bytes_per_element = 2;
  int block_size = 64;

  struct Breakdown {
    double all_to_all_ms = 0;
    double ring_ms = 0;     // (max(compute, p2p) * (R - 1) + compute) * rho_s
    double compute_ms = 0;  // one ring step's balanced compute
    double p2p_ms = 0;      // one K/V shard transfer
    double move_ms = 0;     // extra traffic for blocks off their home shard
    double total_ms = 0;
  };
  // max_group_heads: heads of the largest Ulysses group (its ranks receive the most in the
  // all-to-all and hold the most rows); 0: an even split.
  Breakdown predict(Grid grid, double imbalance_ratio, int64_t kept_blocks, int heads,
                    int64_t tokens, double moved_blocks, int max_group_heads = 0) const;
  // What one head more in the largest group costs (its all-to-all traffic and its rows), in
  // kept blocks of that group: a head balancer exceeds the even split only to save more.
  double extra_head_blocks(Grid grid, int64_t tokens) const;
  // What sharing one head's rows with a second group costs that group: the head's K and V in the
  // all-to-all (link and staging), in kept blocks of the group's time.
  double shared_head_blocks(Grid grid, int64_t tokens) const;
};

struct PlannerOptions {
  double reward = 2.0;            // R_b: the paper's bias towards a block's home shard
  double reuse_threshold = 1.10;  // P_s: re-plan when rho_s of the kept plan exceeds this
  int search_rounds = 4;          // our balancer's local-search passes
  // Ours, on grids without a ring: let the heaviest group share a head's query rows with the
  // lightest (Partition::head_splits) where whole heads cannot balance. Off by default: on an
  // H200 the shared rows' kernels did not run as fast as their blocks predict, and dbsp lost
  // 5 ms of 230 at P = 16 (BENCHMARKS.md, session 12); strategy dbsp-shared turns it on.
  bool share_heads = false;
};

// Statistics of one mask that every planner reads; built once per (mask, rank count) in one pass
// over the bits, so that all factorizations of `ranks` share it.
class MaskStats {
 public:
  MaskStats(const BlockMask& mask, int ranks);
  ~MaskStats();
  MaskStats(MaskStats&&) noexcept;
  MaskStats& operator=(MaskStats&&) noexcept;

  const BlockMask& mask() const;
  int ranks() const;
  int64_t kept() const;
  const std::vector<int64_t>& kept_per_head() const;

  struct Data;
  const Data& data() const { return *data_; }

 private:
  std::unique_ptr<Data> data_;
};

struct LayerPlan {
  Policy policy = Policy::static_split;
  Partition partition;
  double imbalance_ratio = 1;
  double moved_blocks = 0;
  int64_t kept_blocks = 0;
  CostModel::Breakdown predicted;
  double lower_bound = 1;  // LB: no split that keeps heads whole in one group can beat it
};

LayerPlan make_plan(const MaskStats& stats, Grid grid, Policy policy,
                    const PlannerOptions& options = {}, const CostModel& cost = {});

// The head order (Partition::head_order) that pipelined head chunks run best in, from each head's
// work (kept blocks): in every group its heaviest head first, its second heaviest last, the rest
// from heavier to lighter between them; a group of two heads where no group holds more than
// three runs its lighter head first. The first chunk's kernel must hide the later chunks' inputs
// and the last chunk's kernel the earlier chunks' outputs; a light head at either end of the
// slowest rank leaves them exposed, and so does a heavy head whose output leaves before the
// last chunk. make_plan sets it on grids without a ring and with U > 1
// (the grids whose all-to-all is pipelined), for every policy.
std::vector<int> pipeline_head_order(const Partition& partition,
                                     const std::vector<int64_t>& head_work);

// The fastest U x R under the cost model for one policy; every candidate is kept for reports.
struct StrategyChoice {
  LayerPlan best;
  std::vector<LayerPlan> candidates;
};
StrategyChoice choose_strategy(const MaskStats& stats, Policy policy,
                               const PlannerOptions& options = {}, const CostModel& cost = {});

// choose_strategy's best plan, without planning the grids that cannot win: grids start in the
// order of their cost floors (the model's time at rho_s equal to the head lower bound, no moved
// block, an even head split), side by side as threads free up, and a grid whose floor already
// exceeds the best total planned by then is skipped. Same plan as choose_strategy(...).best,
// field for field, on any number of threads; what a layer call's re-plan runs (PlanCache).
LayerPlan fastest_plan(const MaskStats& stats, Policy policy, const PlannerOptions& options = {},
                       const CostModel& cost = {});

// A total that no plan of `policy` on `grid` predicts less than (fastest_plan's floor).
double predicted_floor(const MaskStats& stats, Grid grid, Policy policy,
                       const PlannerOptions& options = {}, const CostModel& cost = {});

// Keeps one plan per layer and re-plans by the P_s rule: the kept plan stays while its rho_s on
// the new mask is at most options.reuse_threshold. With `grid` set, U x R is fixed; otherwise
// every re-plan picks the fastest factorization. Static plans never change.
class PlanCache {
 public:
  PlanCache(int layers, int ranks, Policy policy, PlannerOptions options = {}, CostModel cost = {},
            std::optional<Grid> grid = std::nullopt);

  struct Lookup {
    const LayerPlan* plan;
    bool replanned;
    double current_ratio;  // rho_s of the returned plan on this mask
  };
  Lookup plan_for(int layer, const BlockMask& mask);
  int replans() const { return replans_; }

 private:
  int ranks_;
  Policy policy_;
  std::optional<Grid> grid_;
  PlannerOptions options_;
  CostModel cost_;
  std::vector<std::optional<LayerPlan>> plans_;
  int replans_ = 0;
};

}  // namespace dbsp
