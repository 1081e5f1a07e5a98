// `dbsp attn`: runs the CPU attention variants (dense, block-sparse, fine, LSE-merged halves) on
// one layer of a workload and, with --check, compares each fp32 variant with the fp64 result of
// the same mask: max abs error, relative Frobenius error, LSE error, time, PASS/FAIL.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "commands.hpp"
#include "dbsp/attention.hpp"
#include "dbsp/error.hpp"
#include "dbsp/estimate.hpp"
#include "mask_source.hpp"

namespace dbsp::cli {
namespace {

struct AttnOptions {
  MaskSourceOptions source;
  int step = 0;
  int layer = 0;
  int heads = 0;         // 0: all
  int query_blocks = 0;  // 0: all
  int head_dim = 64;     // only for mask files (a workload fixes its own)
  bool check = false;
  bool estimate = false;
  double tolerance = 1e-4;
  double max_gflop = 200.0;
};

// One layer's inputs: Q, K, V [seq, heads, head_dim] (batch 1) and its block mask.
struct LayerInputs {
  AttentionProblem problem;
  BlockMask mask;
  std::vector<float> q, k, v;
};

std::vector<float> random_tensor(int64_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> data(count);
  for (float& x : data) x = normal(rng);
  return data;
}

// The first `heads` heads and `q_tokens` query tokens of a [seq, all_heads, dim] tensor.
std::vector<float> leading_part(const std::vector<float>& data, int64_t q_tokens, int all_heads,
                                int heads, int dim) {
  std::vector<float> part;
  part.reserve(q_tokens * heads * dim);
  for (int64_t t = 0; t < q_tokens; ++t) {
    const auto first = data.begin() + (t * all_heads) * dim;
    part.insert(part.end(), first, first + int64_t{heads} * dim);
  }
  return part;
}

LayerInputs load_layer(const AttnOptions& o) {
  const MaskSourceOptions& s = o.source;
  require(!s.workload.empty() || !s.mask_file.empty(),
          "give a mask source: --workload NAME or --mask FILE");
  BlockMask full_mask;
  std::vector<float> q, k;
  int head_dim = o.head_dim;
  if (!s.workload.empty()) {
    const SyntheticWorkload workload(model_preset(s.workload), s.seed, s.block);
    const ModelShape& shape = workload.shape();
    require(o.step >= 0 && o.step < shape.steps, "--step must be in [0, ", shape.steps,
            ") for workload ", s.workload, ", got ", o.step);
    require(o.layer >= 0 && o.layer < shape.layers, "--layer must be in [0, ", shape.layers,
            ") for workload ", s.workload, ", got ", o.layer);
    full_mask = workload.block_mask(o.step, o.layer);
    workload.qk(o.step, o.layer, q, k);
    head_dim = shape.head_dim;
  } else {
    const MaskSource source(s);
    require(o.step >= 0 && o.step < source.steps(), "--step must be in [0, ", source.steps(),
            ") for ", s.mask_file, ", got ", o.step);
    require(o.layer >= 0 && o.layer < source.layers(), "--layer must be in [0, ", source.layers(),
            ") for ", s.mask_file, ", got ", o.layer);
    full_mask = source.mask(o.step, o.layer);
    const MaskGeometry g = full_mask.geometry();
    q = random_tensor(g.seq_q * full_mask.heads() * head_dim, s.seed * 3 + 1);
    k = random_tensor(g.seq_k * full_mask.heads() * head_dim, s.seed * 3 + 2);
  }
  const MaskGeometry full = full_mask.geometry();
  const int all_heads = full_mask.heads();
  const int heads = o.heads > 0 ? std::min(o.heads, all_heads) : all_heads;
  const int q_blocks =
      o.query_blocks > 0 ? std::min(o.query_blocks, full_mask.q_blocks()) : full_mask.q_blocks();
  const int64_t q_tokens = std::min<int64_t>(full.seq_q, int64_t{q_blocks} * full.block_q);

  LayerInputs in;
  in.mask = BlockMask(heads, MaskGeometry{q_tokens, full.seq_k, full.block_q, full.block_k});
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < q_blocks; ++i) {
      for (int j = 0; j < full_mask.k_blocks(); ++j) {
        if (full_mask.get(h, i, j)) in.mask.set(h, i, j);
      }
    }
  }
  in.problem = AttentionProblem::uniform(1, q_tokens, full.seq_k, heads, head_dim, full.block_q,
                                         full.block_k);
  in.q = leading_part(q, q_tokens, all_heads, heads, head_dim);
  in.k = leading_part(k, full.seq_k, all_heads, heads, head_dim);
  in.v = random_tensor(full.seq_k * heads * head_dim, s.seed * 3 + 3);
  check_finite(in.q.data(), static_cast<int64_t>(in.q.size()), "Q");
  check_finite(in.k.data(), static_cast<int64_t>(in.k.size()), "K");
  check_finite(in.v.data(), static_cast<int64_t>(in.v.size()), "V");
  return in;
}

template <class T>
struct Output {
  std::vector<T> out, lse;
  double ms = 0;
};

// Runs `attend(q, k, v, out, lse)` in precision T on NaN-poisoned outputs, timing the call.
template <class T, class Attend>
Output<T> timed(const LayerInputs& in, Attend attend) {
  const AttentionProblem& p = in.problem;
  const std::vector<T> q(in.q.begin(), in.q.end()), k(in.k.begin(), in.k.end()),
      v(in.v.begin(), in.v.end());
  Output<T> r;
  r.out.assign(p.seq_q() * p.heads * p.head_dim, std::numeric_limits<T>::quiet_NaN());
  r.lse.assign(p.heads * p.seq_q(), std::numeric_limits<T>::quiet_NaN());
  const auto t0 = std::chrono::steady_clock::now();
  attend(q.data(), k.data(), v.data(), r.out.data(), r.lse.data());
  r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

struct Comparison {
  double max_abs = 0;   // O
  double relative = 0;  // ||O - O_ref||_F / ||O_ref||_F
  double lse = 0;       // max |LSE - LSE_ref|; equal infinities (empty rows) count as 0
};

// NaN anywhere makes every measure infinite, so it can never pass.
Comparison compare(const Output<float>& got, const Output<double>& ref) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  Comparison c;
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got.out.size(); ++i) {
    const double x = got.out[i], y = ref.out[i];
    if (std::isnan(x) || std::isnan(y)) return {kInf, kInf, kInf};
    c.max_abs = std::max(c.max_abs, std::abs(x - y));
    diff += (x - y) * (x - y);
    norm += y * y;
  }
  c.relative = norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
  for (size_t i = 0; i < got.lse.size(); ++i) {
    const double x = got.lse[i], y = ref.lse[i];
    if (std::isnan(x) || std::isnan(y)) return {kInf, kInf, kInf};
    if (x != y) c.lse = std::max(c.lse, std::abs(x - y));
  }
  return c;
}

struct Table {
  double tolerance;
  bool check;
  int failures = 0;

  void header() const {
    std::printf("%-30s %-10s %8s %12s %12s %12s %10s  %s\n", "variant", "mask", "density",
                "max_abs_err", "rel_err", "lse_err", "time_ms", check ? "check" : "");
  }
  void reference(const char* variant, const char* mask, double density, double ms) const {
    std::printf("%-30s %-10s %8.4f %12s %12s %12s %10.2f  %s\n", variant, mask, density, "-", "-",
                "-", ms, check ? "ref" : "");
  }
  void row(const char* variant, const char* mask, double density, double ms,
           const std::optional<Comparison>& c) {
    if (!c) {
      std::printf("%-30s %-10s %8.4f %12s %12s %12s %10.2f\n", variant, mask, density, "-", "-",
                  "-", ms);
      return;
    }
    // Written so that NaN / infinity fail.
    const bool pass = c->relative <= tolerance && c->lse <= tolerance;
    if (!pass) ++failures;
    std::printf("%-30s %-10s %8.4f %12.3e %12.3e %12.3e %10.2f  %s\n", variant, mask, density,
                c->max_abs, c->relative, c->lse, ms, pass ? "PASS" : "FAIL");
  }
};

int run_attn(const AttnOptions& o) {
  const LayerInputs in = load_layer(o);
  const AttentionProblem& p = in.problem;
  const double dense_gflop = 4.0 * p.seq_q() * p.seq_k() * p.heads * p.head_dim / 1e9;
  require(dense_gflop <= o.max_gflop, "dense attention of this layer is ", dense_gflop,
          " GFLOP per run, above --max-gflop ", o.max_gflop,
          "; run fewer heads (--heads) or query blocks (--query-blocks)");

  const std::string source = o.source.workload.empty() ? o.source.mask_file : o.source.workload;
  std::printf(
      "dbsp attn: %s (seed %llu) step %d layer %d: %lld query x %lld key tokens, %lld heads, "
      "head_dim %lld, blocks %d x %d (%d x %d)\n\n",
      source.c_str(), static_cast<unsigned long long>(o.source.seed), o.step, o.layer,
      static_cast<long long>(p.seq_q()), static_cast<long long>(p.seq_k()),
      static_cast<long long>(p.heads), static_cast<long long>(p.head_dim),
      in.mask.geometry().block_q, in.mask.geometry().block_k, in.mask.q_blocks(),
      in.mask.k_blocks());

  const BlockCsr csr = in.mask.to_csr();
  const FineMask from_block = FineMask::from_block(in.mask);
  const double density = in.mask.token_density();
  Table table{o.tolerance, o.check};
  table.header();
  auto compared = [&](const Output<float>& got, const std::optional<Output<double>>& ref) {
    return ref ? std::optional<Comparison>(compare(got, *ref)) : std::nullopt;
  };

  auto dense = [&](const auto* q, const auto* k, const auto* v, auto* out, auto* lse) {
    attention_dense(p, q, k, v, out, lse);
  };
  auto block = [&](const auto* q, const auto* k, const auto* v, auto* out, auto* lse) {
    attention_block_sparse(p, csr, q, k, v, out, lse);
  };
  auto fine_of = [&](const FineMask& mask) {
    return [&p, &mask](const auto* q, const auto* k, const auto* v, auto* out, auto* lse) {
      attention_fine(p, mask, q, k, v, out, lse);
    };
  };

  std::optional<Output<double>> dense_ref, block_ref;
  if (o.check) {
    dense_ref = timed<double>(in, dense);
    table.reference("dense fp64 (reference)", "dense", 1.0, dense_ref->ms);
  }
  const auto dense32 = timed<float>(in, dense);
  table.row("dense fp32", "dense", 1.0, dense32.ms, compared(dense32, dense_ref));

  if (o.check) {
    block_ref = timed<double>(in, block);
    table.reference("block-sparse fp64 (reference)", "block", density, block_ref->ms);
  }
  const auto block32 = timed<float>(in, block);
  table.row("block-sparse fp32", "block", density, block32.ms, compared(block32, block_ref));
  const auto fine32 = timed<float>(in, fine_of(from_block));
  table.row("fine fp32 (from_block)", "block", density, fine32.ms, compared(fine32, block_ref));

  // The mask's key blocks split in two halves (even / odd blocks), merged through the LSE: what a
  // two-step ring does.
  {
    BlockMask even(in.mask.heads(), in.mask.geometry()), odd(in.mask.heads(), in.mask.geometry());
    for (int h = 0; h < in.mask.heads(); ++h)
      for (int i = 0; i < in.mask.q_blocks(); ++i)
        for (int j = 0; j < in.mask.k_blocks(); ++j)
          if (in.mask.get(h, i, j)) (j % 2 == 0 ? even : odd).set(h, i, j);
    const BlockCsr even_csr = even.to_csr(), odd_csr = odd.to_csr();
    auto merged = timed<float>(in, [&](const float* q, const float* k, const float* v, float* out,
                                       float* lse) {
      attention_block_sparse(p, even_csr, q, k, v, out, lse);
      std::vector<float> part_out(p.seq_q() * p.heads * p.head_dim), part_lse(p.heads * p.seq_q());
      attention_block_sparse(p, odd_csr, q, k, v, part_out.data(), part_lse.data());
      merge_partial(int64_t{1}, p.seq_q(), p.heads, p.head_dim, out, lse, part_out.data(),
                    part_lse.data());
    });
    table.row("block-sparse fp32, 2 merged", "block", density, merged.ms,
              compared(merged, block_ref));
  }

  if (o.estimate) {
    EstimateOptions estimate_options;
    estimate_options.block_q = in.mask.geometry().block_q;
    estimate_options.block_k = in.mask.geometry().block_k;
    const auto t0 = std::chrono::steady_clock::now();
    const FineMask estimated = estimate_fine_mask(in.q.data(), in.k.data(), p.seq_q(), p.seq_k(),
                                                  static_cast<int>(p.heads),
                                                  static_cast<int>(p.head_dim), estimate_options);
    const double estimate_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const double fine_density = estimated.density();
    std::optional<Output<double>> fine_ref;
    if (o.check) {
      fine_ref = timed<double>(in, fine_of(estimated));
      table.reference("fine fp64 (reference)", "estimated", fine_density, fine_ref->ms);
    }
    const auto est32 = timed<float>(in, fine_of(estimated));
    table.row("fine fp32 (estimated)", "estimated", fine_density, est32.ms,
              compared(est32, fine_ref));
    std::printf("\nestimate_fine_mask (tau %.2f): %.2f ms\n", estimate_options.tau, estimate_ms);
  }
  if (o.check) {
    std::printf("\n%s: %d failing variant(s), tolerance %.1e (relative O error and LSE error)\n",
                table.failures == 0 ? "PASS" : "FAIL", table.failures, o.tolerance);
  }
  return table.failures == 0 ? 0 : 1;
}

}  // namespace

void register_attn(CLI::App& app) {
  auto options = std::make_shared<AttnOptions>();
  CLI::App* command =
      app.add_subcommand("attn", "run the CPU attention variants on one layer and check them");
  options->source.add_to(*command);
  command->add_option("--step", options->step, "denoising step")->capture_default_str();
  command->add_option("--layer", options->layer, "layer")->capture_default_str();
  command->add_option("--heads", options->heads, "run only the first N heads (0: all)")
      ->check(CLI::NonNegativeNumber);
  command
      ->add_option("--query-blocks", options->query_blocks,
                   "run only the first N query blocks (0: all)")
      ->check(CLI::NonNegativeNumber);
  command->add_option("--head-dim", options->head_dim, "head dim of the random Q/K/V (--mask)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  command->add_flag("--check", options->check,
                    "compare every fp32 variant with the fp64 result of its mask; exit 1 on FAIL");
  command->add_flag("--estimate", options->estimate,
                    "also run fine attention on the mask estimate_fine_mask gives for Q/K");
  command->add_option("--tolerance", options->tolerance, "fp32 tolerance")->capture_default_str();
  command
      ->add_option("--max-gflop", options->max_gflop,
                   "refuse layers whose dense attention needs more work than this")
      ->capture_default_str();
  command->callback([options] {
    const int rc = run_attn(*options);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace dbsp::cli
