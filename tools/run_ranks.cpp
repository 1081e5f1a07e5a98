// `dbsp run`: sequence-parallel block-sparse (with --fine-keep, fine M x 1) attention over MPI
// ranks (mpirun -np P dbsp run ...). Every rank builds the same masks, runs each (step, layer)
// through SpAttention and, with --check, compares its output shard with an fp64 single-rank
// reference; rank 0 prints per-layer and per-rank compute, communication and idle time, measured
// vs predicted imbalance, bytes moved.
#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "commands.hpp"
#include "cost_options.hpp"
#include "dbsp/accuracy.hpp"
#include "dbsp/communicator.hpp"
#include "dbsp/error.hpp"
#include "dbsp/estimate.hpp"
#include "dbsp/fine_mask.hpp"
#include "dbsp/imbalance.hpp"
#include "dbsp/sp_attention.hpp"
#include "dbsp/sp_reference.hpp"
#include "hang_watchdog.hpp"
#include "mask_source.hpp"
#include "run_shared.hpp"

namespace dbsp::cli {
namespace {

// Norm-wise errors of an output against the fp64 reference: relative L2, and the largest error
// relative to the largest reference element; not finite when the output holds NaN or Inf.
struct OutputErrors {
  double relative_l2 = 0;
  double relative_max = 0;
  bool finite = true;
};

OutputErrors output_errors(std::span<const float> checked, const std::vector<double>& reference) {
  double error_sq = 0, reference_sq = 0, max_error = 0, max_reference = 0;
  for (size_t e = 0; e < reference.size(); ++e) {
    const double error = std::abs(checked[e] - reference[e]);
    if (std::isnan(error)) return {.finite = false};
    error_sq += error * error;
    reference_sq += reference[e] * reference[e];
    max_error = std::max(max_error, error);
    max_reference = std::max(max_reference, std::abs(reference[e]));
  }
  if (!std::isfinite(error_sq)) return {.finite = false};
  return {
      .relative_l2 = reference_sq > 0 ? std::sqrt(error_sq / reference_sq) : std::sqrt(error_sq),
      .relative_max = max_reference > 0 ? max_error / max_reference : max_error};
}

// The fp32 host path's rule: the relative L2 error and the largest error relative to the largest
// reference element, each over `tolerance` (<= 1 passes; NaN gives +inf).
double fp32_score(std::span<const float> checked, const std::vector<double>& reference,
                  double tolerance) {
  // Norm-wise, not per element: an element near zero is the difference of large terms (the
  // workload's heads reach logits of about 30), and there fp32 rounding alone moves it by more
  // than 1e-4 of itself (plain fp32 attention measured 1.0e-4 of max(|ref|, 1e-2) on tiny).
  const OutputErrors errors = output_errors(checked, reference);
  if (!errors.finite) return INFINITY;
  return std::max(errors.relative_l2, errors.relative_max) / tolerance;
}

// Query blocks [shard.first_block, end) that --check compares (the first `blocks`, all when 0).
int checked_end_block(const SequenceShard& shard, int blocks) {
  return blocks > 0 ? std::min(shard.end_block, shard.first_block + blocks) : shard.end_block;
}

// How far `out` is from the fp64 single-rank result for the first `blocks` query blocks of this
// rank's shard (all when 0), as a fraction of what is allowed (<= 1 passes; NaN gives +inf), for a
// block or a fine mask. fp32 host path: fp32_score. bf16 device path (the reference then sees the
// inputs rounded as the device does): the rule of accuracy.hpp, relative L2 over `tolerance` and
// the largest error over twice the naive bf16 path's (block or fine, as the mask).
template <class Mask>
double check_score(const SpProblem& problem, const Mask& mask, const InputSource& source,
                   const SequenceShard& shard, const std::vector<float>& out, int blocks,
                   bool bf16_inputs, double tolerance) {
  const int end_block = checked_end_block(shard, blocks);
  if (end_block <= shard.first_block) return 0;
  const std::vector<double> reference =
      reference_rows(problem, mask, source, shard.first_block, end_block, bf16_inputs);
  const std::span<const float> checked(out.data(), reference.size());
  if (!bf16_inputs) return fp32_score(checked, reference, tolerance);
  const std::vector<float> naive =
      naive_bf16_rows(problem, mask, source, shard.first_block, end_block);
  const AccuracyReport report = compare_with_reference(checked, reference, naive);
  if (!report.finite) return INFINITY;
  return std::max(report.relative_l2 / tolerance,
                  report.max_error / (2.0 * report.naive_max_error + 1e-6));
}

// --check's tolerance unless given: relative L2 (and, on cpu, the largest error relative to the
// largest reference element) of bf16 outputs on cuda, fp32 on cpu.
double default_tolerance(bool device) { return device ? 1e-2 : 1e-4; }

void print_rank_table(const std::vector<SpTelemetry>& ranks) {
  std::printf("\nper rank (sum over all layers and steps):\n");
  std::printf("%5s %11s %9s %9s %9s %9s %10s %9s %9s %9s %11s\n", "rank", "compute_ms", "comm_ms",
              "wait_ms", "idle_ms", "setup_ms", "total_ms", "sent_MB", "recv_MB", "saved_MB",
              "ring steps");
  for (size_t r = 0; r < ranks.size(); ++r) {
    const SpTelemetry& t = ranks[r];
    std::printf("%5zu %11.2f %9.2f %9.2f %9.2f %9.2f %10.2f %9.3f %9.3f %9.3f %5d/%-5d\n", r,
                t.compute_ms, t.comm_ms, t.wait_ms, t.idle_ms, t.setup_ms, t.total_ms,
                static_cast<double>(t.bytes_sent) / kMB,
                static_cast<double>(t.bytes_received) / kMB,
                static_cast<double>(t.bytes_saved) / kMB, t.ring_steps_computed,
                t.ring_steps_computed + t.ring_steps_skipped);
  }
}

// Where batch element b's inputs come from: its own seed (V always; Q and K unless they are the
// workload's, which every element shares).
InputSource element_source(const InputSource& source, int b) {
  InputSource element = source;
  element.seed = source.seed + 7919u * static_cast<uint64_t>(b);
  return element;
}

// Whether two sources give the same tensors (the workload's step and layer matter only with one).
bool same_inputs(const InputSource& a, const InputSource& b) {
  return a.seed == b.seed && a.workload == b.workload &&
         (a.workload == nullptr || (a.step == b.step && a.layer == b.layer));
}

// This rank's Q, K, V shards of every batch element, back to back (and their bf16 copies on the
// GPU for the device path).
struct LayerInputs {
  SpProblem problem{0, 0, {}, 0.0};
  InputSource source;
  SequenceShard q_shard;
  std::vector<float> q, k, v;
  std::optional<DeviceBf16> device_q, device_k, device_v;

  LayerInputs() = default;
  LayerInputs(const SpProblem& p, const InputSource& s, int rank, int ranks, bool device)
      : problem(p), source(s) {
    require_source_fits(s, p);
    q_shard = sequence_shard(p.q_layout(), rank, ranks);
    const SequenceShard k_shard = sequence_shard(p.k_layout(), rank, ranks);
    const size_t q_part = static_cast<size_t>(q_shard.end_token - q_shard.first_token) *
                          static_cast<size_t>(p.heads) * static_cast<size_t>(p.head_dim);
    const size_t k_part = static_cast<size_t>(k_shard.end_token - k_shard.first_token) *
                          static_cast<size_t>(p.heads) * static_cast<size_t>(p.head_dim);
    for (int b = 0; b < p.batch; ++b) {
      const InputSource element = element_source(s, b);
      if (b == 0 && element.workload != nullptr) {
        // The workload writes Q and K together: one pass instead of one per tensor.
        element.workload->qk_tokens(element.step, element.layer, q_shard.first_token,
                                    q_shard.end_token, q, k);
        if (k_shard.first_token != q_shard.first_token || k_shard.end_token != q_shard.end_token) {
          std::vector<float> unused_q;
          element.workload->qk_tokens(element.step, element.layer, k_shard.first_token,
                                      k_shard.end_token, unused_q, k);
        }
      }
      for (auto [which, tensor, shard, part_size] :
           {std::tuple{0, &q, q_shard, q_part}, std::tuple{1, &k, k_shard, k_part},
            std::tuple{2, &v, k_shard, k_part}}) {
        if (element.workload != nullptr && which != 2) {
          if (b == 0) continue;  // written above
          // The workload's Q and K do not depend on the seed: element 0's, not generated again
          // (copied first: insert may not read from the vector it grows).
          const std::vector<float> first(tensor->begin(),
                                         tensor->begin() + static_cast<std::ptrdiff_t>(part_size));
          tensor->insert(tensor->end(), first.begin(), first.end());
          continue;
        }
        const std::vector<float> part =
            source_tensor(element, which, shard.first_token, shard.end_token, p.heads, p.head_dim);
        tensor->insert(tensor->end(), part.begin(), part.end());
      }
    }
    if (device) {
      device_q.emplace(q);
      device_k.emplace(k);
      device_v.emplace(v);
    }
  }
};

// --estimate: the layer's estimation options (the source's block sizes) and what --check expects
// of the estimated mask: the single-process estimator on the whole regenerated Q and K of batch
// element 0 (bf16-rounded on the device path, which sees bf16).
EstimateOptions estimate_options(const SpProblem& problem, double tau) {
  EstimateOptions options;
  options.block_q = problem.geometry.block_q;
  options.block_k = problem.geometry.block_k;
  options.tau = tau;
  return options;
}

BlockMask expected_estimate(const SpProblem& problem, const InputSource& source, double tau,
                            bool bf16_inputs) {
  const MaskGeometry& g = problem.geometry;
  std::vector<float> q = source_tensor(source, 0, 0, g.seq_q, problem.heads, problem.head_dim);
  std::vector<float> k = source_tensor(source, 1, 0, g.seq_k, problem.heads, problem.head_dim);
  if (bf16_inputs) {
    for (float& x : q) x = round_to_bf16(x);
    for (float& x : k) x = round_to_bf16(x);
  }
  return estimate_block_mask(q.data(), k.data(), g.seq_q, g.seq_k, problem.heads, problem.head_dim,
                             estimate_options(problem, tau));
}

// Bits in which two masks of one shape differ.
int64_t differing_blocks(const BlockMask& a, const BlockMask& b) {
  int64_t differ = 0;
  for (int h = 0; h < a.heads(); ++h) {
    for (int i = 0; i < a.q_blocks(); ++i) {
      for (int w = 0; w < a.words_per_row(); ++w) {
        differ += std::popcount(a.row_bits(h, i)[w] ^ b.row_bits(h, i)[w]);
      }
    }
  }
  return differ;
}

// Prints this rank's error; with more than one rank, ends the job (the others would wait for this
// one until their timeout).
void report_failure(int rank, int ranks, const std::exception& e) {
  std::fprintf(stderr, "dbsp run: rank %d of %d: error: %s\n", rank, ranks, e.what());
  std::fflush(stderr);
  if (ranks > 1) MpiEnvironment::abort(2);
}

// Reports a failed call and ends the job from where it failed (more than one rank). Unwinding
// first would free GPU buffers, and freeing waits for all of the device's work, including a
// transfer that a dead or stuck peer never completes: the report would never be printed.
template <class Call>
decltype(auto) or_end_job(int rank, int ranks, Call&& call) {
  try {
    return call();
  } catch (const std::exception& e) {
    if (ranks <= 1) throw;
    report_failure(rank, ranks, e);
    throw;  // not reached: the job has ended
  }
}

}  // namespace

int run_ranks(const RunOptions& o) {
  require(o.backend == "cpu" || o.backend == "cuda", "--backend: expected cpu or cuda, got '",
          o.backend, "'");
  const bool device = o.backend == "cuda";
  require(!device || nccl_available(),
          "--backend cuda needs dbsp built with CUDA and NCCL (-DDBSP_CUDA=ON)");
  MpiEnvironment mpi;
  std::unique_ptr<Communicator> world = make_mpi_world({.timeout_seconds = o.timeout});
  const int rank = world->rank(), ranks = world->size();
  const bool root = rank == 0;
  bool all_ok = true;
  // A layer call waits at most `timeout` per phase (inputs, ring steps, outputs): past twice that
  // and a grace, it is stuck below dbsp.
  HangWatchdog watchdog(2 * o.timeout + 30,
                        "dbsp run: rank " + std::to_string(rank) + " of " + std::to_string(ranks));
  // A GPU layer call: ended by the watchdog if it hangs, reported where it fails.
  auto device_call = [&](std::string what, auto&& call) {
    return or_end_job(rank, ranks, [&] { return watchdog.guard(std::move(what), call); });
  };
  try {
    // The device path runs over NCCL, one GPU per rank; MPI only bootstraps it and gathers checks.
    std::unique_ptr<Communicator> nccl;
    if (device) {
      nccl = make_nccl_world(*world, device_for_rank(rank), {.timeout_seconds = o.timeout});
    }
    Communicator& data_comm = device ? *nccl : *world;
    const MaskSource source(o.source);
    const auto [layers, steps, head_dim] = RunExtent(o, source);
    // --estimate on a workload: Q and K of each (step, layer) are the workload's, so that the
    // estimated masks show its heads' patterns (uniform inputs estimate nearly dense masks).
    const SyntheticWorkload* qk_workload =
        o.estimate && !o.uniform_inputs ? source.workload() : nullptr;
    require(qk_workload == nullptr || head_dim == qk_workload->shape().head_dim,
            "--estimate takes Q and K from workload ", source.name(), ", whose head_dim is ",
            qk_workload ? qk_workload->shape().head_dim : 0, ": drop --head-dim ", head_dim,
            " or add --uniform-inputs");
    const double tolerance = o.tolerance > 0 ? o.tolerance : default_tolerance(device);
    const Strategy strategy = parse_strategy(o.strategy, ranks);
    SpAttention attention(data_comm, strategy, layers,
                          {.mask_aware = !o.send_all,
                           .ring_reserved_sms = o.ring_reserved_sms,
                           .head_chunks = o.head_chunks,
                           .ring_overlap = !o.no_ring_overlap,
                           .check_finite = !o.no_finite_check,
                           .split_long_rows = !o.no_split_rows,
                           .split_step_heads = o.split_step_heads},
                          o.planner, o.cost);
    std::vector<SpTelemetry> totals(static_cast<size_t>(ranks));
    LayerInputs inputs;
    double predicted_sum = 0, measured_sum = 0, wall_ms = 0, sent = 0, saved = 0;
    int entries = 0;
    if (o.warmup > 0) {
      // First transfers between two ranks set up NCCL connections and first launches load
      // kernels: do that on every grid the strategy may use, outside the measured run and the
      // plan cache.
      const BlockMask mask = source.mask(0, 0);
      const SpProblem problem = layer_problem(mask, head_dim);
      inputs = LayerInputs(problem, {.seed = o.source.seed * 1000003u + 1u}, rank, ranks, device);
      const std::vector<Grid> grids =
          strategy.grid ? std::vector<Grid>{*strategy.grid} : factorizations(ranks);
      const auto warmup_start = std::chrono::steady_clock::now();
      std::vector<float> out(inputs.q.size());
      std::optional<DeviceBf16> device_out;
      if (device) device_out.emplace(out.size());
      for (Grid grid : grids) {
        const Partition partition =
            Partition::contiguous(grid, mask.heads(), mask.q_blocks(), mask.k_blocks());
        for (int n = 0; n < o.warmup; ++n) {
          if (device) {
            device_call("the warm-up call on grid " + grid.name(), [&] {
              return attention.executor().run_device_bf16(
                  problem, mask, partition, inputs.device_q->data(), inputs.device_k->data(),
                  inputs.device_v->data(), device_out->data());
            });
          } else {
            attention.executor().run(problem, mask, partition, inputs.q.data(), inputs.k.data(),
                                     inputs.v.data(), out.data());
          }
        }
      }
      if (root) {
        std::printf("warm-up: %zu grid(s) x %d call(s) in %.1f ms (not counted below)\n",
                    grids.size(), o.warmup,
                    std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                              warmup_start)
                        .count());
      }
    }
    if (root) {
      std::printf(
          "dbsp run: %s, %d layers x %d steps, batch %d, %d ranks, strategy %s, backend "
          "%s%s\n",
          source.name().c_str(), layers, steps, o.batch, ranks, strategy.name().c_str(),
          o.backend.c_str(), o.send_all ? ", mask-aware communication off" : "");
      if (o.fine) {
        std::printf(
            "fine (M x 1) masks: in every kept block of every row a seeded %.3g of its keys "
            "(at least one); planned on the covering blocks, rho_pred is rho_s of the kept "
            "slices\n",
            o.fine_keep);
      }
      if (o.estimate) {
        std::printf("masks estimated from the run's Q and K on every rank's shard (tau %.3g); %s\n",
                    o.tau,
                    qk_workload ? "Q and K from the workload's heads, V seeded"
                                : "Q, K and V seeded uniform values");
      }
      std::printf("%4s %5s %6s %6s %8s %8s %9s %11s %11s %9s %9s %9s %9s%s%s%s\n", "step", "layer",
                  "grid", "replan", "rho_pred", "rho_meas", "wall_ms", "compute_max", "compute_avg",
                  "comm_max", "idle_max", "sent_MB", "saved_MB",
                  o.estimate ? "   est_ms  density" : "", o.fine ? " blk_dens M1_dens" : "",
                  o.check ? " err/limit" : "");
    }
    // --plan-ahead: the masks of this and the next layer call (and with --fine-keep their fine
    // masks), at fixed addresses (plan_ahead keeps a pointer to the next one until its forward);
    // otherwise the call's mask.
    std::array<std::optional<BlockMask>, 2> ahead_masks;
    std::array<std::optional<FineMask>, 2> ahead_fine;
    std::optional<BlockMask> call_mask;
    std::optional<FineMask> call_fine;
    double call_ms = 0;  // forward calls, host work included: per call the slowest rank, summed
    int planned_ahead_calls = 0;  // calls that found their hash, plan and schedule prepared
    std::optional<BlockMask> expected_mask;  // --estimate --check, for the current inputs
    int64_t mask_differences = 0;            // --estimate --check, all layers
    double estimate_ms = 0;                  // --estimate: per layer the slowest rank's, summed
    double density_sum = 0;                  // --estimate: the estimated masks' densities, summed
    double fine_density_sum = 0;             // --fine-keep: kept slices' densities, summed
    // Output buffers kept across calls, so that no call times their allocation (a 720p layer's
    // output is 0.8 GB in bf16). --check poisons them (NaN) before each call, outside its time,
    // so that a row the call leaves unwritten cannot pass with the previous call's value.
    std::vector<float> out;
    std::optional<DeviceBf16> device_out;
    for (int step = 0; step < steps; ++step) {
      for (int layer = 0; layer < layers; ++layer) {
        // With --estimate the source gives the layer's shape; the bits come from the estimate.
        const int call = step * layers + layer;
        // --fine-keep: the same fine mask on every rank (seeded by the run's seed, step, layer).
        if (o.plan_ahead && call == 0) {
          ahead_masks[0] = source.mask(step, layer);
          if (o.fine) ahead_fine[0] = layer_fine_mask(o, *ahead_masks[0], step, layer);
        }
        BlockMask& mask =
            o.plan_ahead ? *ahead_masks[call % 2] : call_mask.emplace(source.mask(step, layer));
        const FineMask* fine = nullptr;
        if (o.fine) {
          fine = o.plan_ahead ? &*ahead_fine[call % 2]
                              : &call_fine.emplace(layer_fine_mask(o, mask, step, layer));
          fine_density_sum += fine->density();
        }
        if (o.plan_ahead && call + 1 < steps * layers) {
          const int next_step = (call + 1) / layers, next_layer = (call + 1) % layers;
          BlockMask& next = ahead_masks[(call + 1) % 2].emplace(source.mask(next_step, next_layer));
          const SpProblem next_problem = layer_problem(next, head_dim, o.batch);
          if (o.fine) {
            const FineMask& next_fine =
                ahead_fine[(call + 1) % 2].emplace(layer_fine_mask(o, next, next_step, next_layer));
            if (device) {
              attention.plan_ahead_device(next_layer, next_problem, next_fine);
            } else {
              attention.plan_ahead(next_layer, next_problem, next_fine);
            }
          } else if (device) {
            attention.plan_ahead_device(next_layer, next_problem, next);
          } else {
            attention.plan_ahead(next_layer, next_problem, next);
          }
        }
        const SpProblem problem = layer_problem(mask, head_dim, o.batch);
        const EstimateOptions estimate = estimate_options(problem, o.tau);
        // Seeded inputs depend on the seed only (not on the layer), so each rank generates them
        // once; the workload's Q and K change with every (step, layer).
        const InputSource input_source{.seed = o.source.seed * 1000003u + 1u,
                                       .workload = qk_workload,
                                       .step = step,
                                       .layer = layer};
        if (inputs.problem.geometry != problem.geometry || inputs.problem.heads != problem.heads ||
            inputs.problem.head_dim != problem.head_dim || inputs.problem.batch != problem.batch ||
            !same_inputs(inputs.source, input_source)) {
          inputs = LayerInputs(problem, input_source, rank, ranks, device);
          expected_mask.reset();
        }
        const float unwritten = o.check ? std::numeric_limits<float>::quiet_NaN() : 0.0f;
        if (out.size() != inputs.q.size() || o.check) out.assign(inputs.q.size(), unwritten);
        if (device && (!device_out || device_out->size() != out.size() || o.check)) {
          device_out.reset();
          device_out.emplace(std::span<const float>(out));
        }
        SpLayerReport report;
        const auto call_start = std::chrono::steady_clock::now();
        if (device) {
          report =
              device_call("step " + std::to_string(step) + " layer " + std::to_string(layer), [&] {
                const void *q = inputs.device_q->data(), *k = inputs.device_k->data(),
                           *v = inputs.device_v->data();
                if (o.estimate) {
                  return attention.forward_device_bf16(layer, problem, estimate, q, k, v,
                                                       device_out->data());
                }
                if (fine) {
                  return attention.forward_device_bf16(layer, problem, *fine, q, k, v,
                                                       device_out->data());
                }
                return attention.forward_device_bf16(layer, problem, mask, q, k, v,
                                                     device_out->data());
              });
          if (o.check) out = device_out->to_host();
        } else if (o.estimate) {
          report = attention.forward(layer, problem, estimate, inputs.q.data(), inputs.k.data(),
                                     inputs.v.data(), out.data());
        } else if (fine) {
          report = attention.forward(layer, problem, *fine, inputs.q.data(), inputs.k.data(),
                                     inputs.v.data(), out.data());
        } else {
          report = attention.forward(layer, problem, mask, inputs.q.data(), inputs.k.data(),
                                     inputs.v.data(), out.data());
        }
        {
          const double mine = std::chrono::duration<double, std::milli>(
                                  std::chrono::steady_clock::now() - call_start)
                                  .count();
          const std::vector<double> calls = world->all_gather(mine, "call time");
          call_ms += *std::max_element(calls.begin(), calls.end());
          if (report.planned_ahead) ++planned_ahead_calls;
        }
        double layer_estimate_ms = 0;
        int64_t layer_mask_differences = 0;
        if (o.estimate) {
          mask = std::move(*report.estimated_mask);
          density_sum += mask.density();
          const std::vector<double> times = world->all_gather(report.estimate_ms, "estimate time");
          layer_estimate_ms = *std::max_element(times.begin(), times.end());
          estimate_ms += layer_estimate_ms;
          if (o.check) {
            if (!expected_mask) {
              expected_mask =
                  expected_estimate(problem, element_source(input_source, 0), o.tau, device);
            }
            const std::vector<int64_t> differences =
                world->all_gather(differing_blocks(mask, *expected_mask), "estimate check");
            layer_mask_differences = *std::max_element(differences.begin(), differences.end());
            mask_differences += layer_mask_differences;
            // The device estimator scores in fp32: only blocks at the tau cut may differ.
            const int64_t allowed = device ? std::max<int64_t>(2, expected_mask->kept() / 500) : 0;
            all_ok = all_ok && layer_mask_differences <= allowed;
          }
        }
        double error = 0;
        if (o.check) {
          double mine = 0;
          const size_t per_element = out.size() / static_cast<size_t>(problem.batch);
          for (int b = 0; b < problem.batch; ++b) {
            const std::vector<float> element(out.begin() + b * per_element,
                                             out.begin() + (b + 1) * per_element);
            const InputSource element_inputs = element_source(input_source, b);
            mine = std::max(mine, fine ? check_score(problem, *fine, element_inputs, inputs.q_shard,
                                                     element, o.check_blocks, device, tolerance)
                                       : check_score(problem, mask, element_inputs, inputs.q_shard,
                                                     element, o.check_blocks, device, tolerance));
          }
          const std::vector<double> errors = world->all_gather(mine, "check gather");
          error = *std::max_element(errors.begin(), errors.end());
          all_ok = all_ok && error <= 1.0;
        }
        double compute_max = 0, compute_sum = 0, comm_max = 0, idle_max = 0, layer_wall = 0;
        double layer_sent = 0, layer_saved = 0;
        for (int r = 0; r < ranks; ++r) {
          const SpTelemetry& t = report.per_rank[r];
          totals[r].add(t);
          compute_max = std::max(compute_max, t.compute_ms);
          compute_sum += t.compute_ms;
          comm_max = std::max(comm_max, t.comm_ms);
          idle_max = std::max(idle_max, t.idle_ms);
          layer_wall = std::max(layer_wall, t.total_ms);
          layer_sent += static_cast<double>(t.bytes_sent);
          layer_saved += static_cast<double>(t.bytes_saved);
        }
        predicted_sum += report.predicted_ratio;
        measured_sum += report.measured_ratio;
        wall_ms += layer_wall;
        sent += layer_sent;
        saved += layer_saved;
        ++entries;
        if (root) {
          std::printf("%4d %5d %6s %6s %8.3f %8.3f %9.2f %11.2f %11.2f %9.2f %9.2f %9.3f %9.3f",
                      step, layer, report.grid.name().c_str(), report.replanned ? "yes" : "no",
                      report.predicted_ratio, report.measured_ratio, layer_wall, compute_max,
                      compute_sum / ranks, comm_max, idle_max, layer_sent / kMB, layer_saved / kMB);
          if (o.estimate) std::printf(" %8.2f %8.4f", layer_estimate_ms, mask.density());
          if (fine) std::printf(" %8.4f %8.4f", mask.density(), fine->density());
          if (o.check) std::printf(" %9.3f%s", error, error <= 1.0 ? "" : " FAIL");
          if (layer_mask_differences > 0) {
            std::printf(" (mask: %lld blocks differ from the single-process estimator)",
                        static_cast<long long>(layer_mask_differences));
          }
          std::printf("\n");
        }
      }
    }
    if (root) {
      print_rank_table(totals);
      double max_compute = 0, sum_compute = 0;
      for (const SpTelemetry& t : totals) {
        max_compute = std::max(max_compute, t.compute_ms);
        sum_compute += t.compute_ms;
      }
      std::printf(
          "\nsummary: wall %.2f ms over %d layer calls; imbalance max/mean rank compute "
          "%.3f (whole run), per layer measured %.3f vs predicted rho_s %.3f (means); "
          "replans %d\n",
          wall_ms, entries, sum_compute > 0 ? max_compute / (sum_compute / ranks) : 1.0,
          measured_sum / entries, predicted_sum / entries, attention.replans());
      std::printf(
          "forward calls: %.2f ms (per call the slowest rank's, with the hash, plan and "
          "cross-rank checks%s)\n",
          call_ms, o.plan_ahead ? "; host work of the next call started ahead" : "");
      if (o.plan_ahead) {
        std::printf("planned ahead: %d of %d calls found their host work prepared\n",
                    planned_ahead_calls, entries);
      }
      std::printf(
          "bytes sent %.3f MB; mask-aware communication saved %.3f MB (%.1f%% of sending "
          "every slab)\n",
          sent / kMB, saved / kMB, sent + saved > 0 ? 100.0 * saved / (sent + saved) : 0.0);
      if (o.estimate) {
        std::printf(
            "mask estimation: %.2f ms over %d layer calls (per call the slowest rank); mean "
            "estimated density %.4f (%s)\n",
            estimate_ms, entries, density_sum / entries,
            qk_workload ? "workload Q and K" : "uniform Q and K");
      }
      if (o.fine) {
        std::printf(
            "fine masks: mean kept-slice (M x 1) density %.4f over %d layer calls (%.3g of each "
            "kept block's keys)\n",
            fine_density_sum / entries, entries, o.fine_keep);
      }
      if (o.check && o.estimate) {
        std::printf(
            "estimated masks vs the single-process estimator on the whole Q and K: %lld blocks "
            "differ (%s)\n",
            static_cast<long long>(mask_differences),
            device ? "the device scores in fp32: a few blocks at the tau cut may differ"
                   : "must be equal bit for bit");
      }
      if (o.check) {
        if (device) {
          std::printf(
              "check: %s (every output shard vs the fp64 single-rank reference: relative L2 <= "
              "%.1e and max error <= 2x the naive bf16 path's; err/limit <= 1)\n",
              all_ok ? "PASS" : "FAIL", tolerance);
        } else {
          std::printf(
              "check: %s (every output shard vs the fp64 single-rank reference: relative L2 and "
              "max error over the largest reference element <= %.1e; err/limit <= 1)\n",
              all_ok ? "PASS" : "FAIL", tolerance);
        }
      }
    }
  } catch (const std::exception& e) {
    report_failure(rank, ranks, e);
    throw;
  }
  return all_ok ? 0 : 1;
}

}  // namespace dbsp::cli
