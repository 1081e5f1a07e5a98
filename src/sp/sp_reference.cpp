// Seeded inputs and the single-rank reference of query-block rows.
#include "dbsp/sp_reference.hpp"

#include <span>
#include <type_traits>
#include <utility>

#include "dbsp/attention.hpp"
#include "dbsp/block_layout.hpp"
#include "dbsp/error.hpp"

namespace dbsp {
namespace {

uint64_t mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The single-rank problem of query blocks [first_q_block, end_q_block) against every key.
struct RowsProblem {
  AttentionProblem local;
  std::vector<int> rows;  // the query blocks
  int64_t first = 0, end = 0, keys = 0;
};

RowsProblem rows_problem(const SpProblem& problem, int first_q_block, int end_q_block) {
  const BlockLayout q_layout = problem.q_layout();
  const BlockLayout k_layout = problem.k_layout();
  RowsProblem r;
  for (int i = first_q_block; i < end_q_block; ++i) r.rows.push_back(i);
  r.local.heads = problem.heads;
  r.local.head_dim = problem.head_dim;
  r.local.q_layout = BlockLayout::gather(q_layout, r.rows);
  r.local.k_layout = k_layout;
  r.local.scale = problem.scale;
  r.first = q_layout.start[first_q_block];
  r.end = q_layout.start[end_q_block];
  r.keys = k_layout.tokens();
  return r;
}

// The block mask's rows of those query blocks.
BlockCsr rows_csr(const BlockMask& mask, const RowsProblem& r) {
  std::vector<int> heads, keys;
  for (int h = 0; h < mask.heads(); ++h) heads.push_back(h);
  for (int j = 0; j < mask.k_blocks(); ++j) keys.push_back(j);
  return mask.slice(heads, r.rows, keys).to_csr();
}

// The fine mask's rows of those query blocks (keys stay global: the reference sees every key).
FineMask rows_fine_mask(const SpProblem& problem, const FineMask& mask, const RowsProblem& r) {
  const MaskGeometry& g = mask.geometry();
  require(mask.heads() == problem.heads && g == problem.geometry, "reference rows: fine mask of ",
          mask.heads(), " heads, ", g.seq_q, " x ", g.seq_k, " tokens in blocks of ", g.block_q,
          " x ", g.block_k, " for a problem of ", problem.heads, " heads, ", problem.geometry.seq_q,
          " x ", problem.geometry.seq_k, " in blocks of ", problem.geometry.block_q, " x ",
          problem.geometry.block_k);
  std::vector<int64_t> row_offset{0};
  std::vector<int32_t> key_index;
  for (int h = 0; h < mask.heads(); ++h) {
    for (int i : r.rows) {
      const std::span<const int32_t> keys = mask.keys(h, i);
      key_index.insert(key_index.end(), keys.begin(), keys.end());
      row_offset.push_back(static_cast<int64_t>(key_index.size()));
    }
  }
  return FineMask(mask.heads(), MaskGeometry{r.end - r.first, g.seq_k, g.block_q, g.block_k},
                  std::move(row_offset), std::move(key_index));
}

template <class T>
std::vector<T> source_inputs(const InputSource& source, int which, int64_t first, int64_t end,
                             const SpProblem& problem, bool round_to_bf16_first) {
  const std::vector<float> values =
      source_tensor(source, which, first, end, problem.heads, problem.head_dim);
  std::vector<T> out(values.size());
  for (size_t e = 0; e < values.size(); ++e) {
    out[e] = round_to_bf16_first ? round_to_bf16(values[e]) : values[e];
  }
  return out;
}

// Output rows of query blocks [first_q_block, end_q_block) in element type T: the inputs from
// `source` (rounded to bf16 first when asked), the mask's rows from rows_mask(rows problem), and
// attention(local problem, rows mask, q, k, v, out) computing them.
template <class T, class RowsMask, class Attention>
std::vector<T> rows_through(const SpProblem& problem, const InputSource& source, int first_q_block,
                            int end_q_block, bool round_inputs_to_bf16, const RowsMask& rows_mask,
                            const Attention& attention) {
  require_source_fits(source, problem);
  require(0 <= first_q_block && first_q_block <= end_q_block &&
              end_q_block <= problem.geometry.q_blocks(),
          "reference rows: query blocks [", first_q_block, ", ", end_q_block, ") outside [0, ",
          problem.geometry.q_blocks(), ")");
  const RowsProblem r = rows_problem(problem, first_q_block, end_q_block);
  const auto mask = rows_mask(r);
  const bool round = round_inputs_to_bf16;
  const auto q = source_inputs<T>(source, 0, r.first, r.end, problem, round);
  const auto k = source_inputs<T>(source, 1, 0, r.keys, problem, round);
  const auto v = source_inputs<T>(source, 2, 0, r.keys, problem, round);
  std::vector<T> out(q.size());
  if (q.empty()) return out;
  attention(r.local, mask, q.data(), k.data(), v.data(), out.data());
  return out;
}

// The fp64 reference: the attention of `Mask`, its LSE dropped.
template <class Mask>
auto fp64_attention() {
  return [](const AttentionProblem& local, const auto& mask, const double* q, const double* k,
            const double* v, double* out) {
    std::vector<double> lse(static_cast<size_t>(local.seq_q() * local.heads));
    if constexpr (std::is_same_v<Mask, FineMask>) {
      attention_fine<double>(local, mask, q, k, v, out, lse.data());
    } else {
      attention_block_sparse<double>(local, mask, q, k, v, out, lse.data());
    }
  };
}

}  // namespace

float seeded_value(uint64_t seed, int which, int64_t token, int64_t head, int64_t dim) {
  uint64_t h = mix(seed ^ mix(static_cast<uint64_t>(which) + 1));
  h = mix(h ^ static_cast<uint64_t>(token));
  h = mix(h ^ static_cast<uint64_t>(head));
  h = mix(h ^ static_cast<uint64_t>(dim));
  return static_cast<float>(static_cast<double>(h >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

std::vector<float> seeded_tensor(uint64_t seed, int which, int64_t first, int64_t end, int heads,
                                 int head_dim) {
  std::vector<float> out(static_cast<size_t>((end - first) * heads * head_dim));
  size_t at = 0;
  for (int64_t t = first; t < end; ++t) {
    for (int h = 0; h < heads; ++h) {
      for (int d = 0; d < head_dim; ++d) out[at++] = seeded_value(seed, which, t, h, d);
    }
  }
  return out;
}

void require_source_fits(const InputSource& source, const SpProblem& problem) {
  if (source.workload == nullptr) return;
  const ModelShape& shape = source.workload->shape();
  require(problem.heads == shape.heads && problem.head_dim == shape.head_dim &&
              problem.geometry.seq_q == shape.tokens() && problem.geometry.seq_k == shape.tokens(),
          "inputs from workload ", shape.name, " (", shape.heads, " heads, head_dim ",
          shape.head_dim, ", ", shape.tokens(), " tokens) do not fit the problem (", problem.heads,
          " heads, head_dim ", problem.head_dim, ", ", problem.geometry.seq_q, " query and ",
          problem.geometry.seq_k, " key tokens)");
  require(source.step >= 0 && source.step < shape.steps && source.layer >= 0 &&
              source.layer < shape.layers,
          "inputs from workload ", shape.name, ": step ", source.step, ", layer ", source.layer,
          " outside its ", shape.steps, " steps x ", shape.layers, " layers");
}

std::vector<float> source_tensor(const InputSource& source, int which, int64_t first, int64_t end,
                                 int heads, int head_dim) {
  require(which >= 0 && which <= 2, "source_tensor: tensor ", which, " (expected 0 Q, 1 K, 2 V)");
  if (source.workload == nullptr || which == 2) {
    return seeded_tensor(source.seed, which, first, end, heads, head_dim);
  }
  const ModelShape& shape = source.workload->shape();
  require(heads == shape.heads && head_dim == shape.head_dim, "source_tensor: ", heads,
          " heads of head_dim ", head_dim, " asked of workload ", shape.name, ", which has ",
          shape.heads, " heads of head_dim ", shape.head_dim);
  std::vector<float> q, k;
  source.workload->qk_tokens(source.step, source.layer, first, end, q, k);
  return which == 0 ? q : k;
}

std::vector<double> reference_rows(const SpProblem& problem, const BlockMask& mask, uint64_t seed,
                                   int first_q_block, int end_q_block, bool round_inputs_to_bf16) {
  return reference_rows(problem, mask, InputSource{.seed = seed}, first_q_block, end_q_block,
                        round_inputs_to_bf16);
}

std::vector<float> naive_bf16_rows(const SpProblem& problem, const BlockMask& mask, uint64_t seed,
                                   int first_q_block, int end_q_block) {
  return naive_bf16_rows(problem, mask, InputSource{.seed = seed}, first_q_block, end_q_block);
}

std::vector<double> reference_rows(const SpProblem& problem, const BlockMask& mask,
                                   const InputSource& source, int first_q_block, int end_q_block,
                                   bool round_inputs_to_bf16) {
  return rows_through<double>(
      problem, source, first_q_block, end_q_block, round_inputs_to_bf16,
      [&](const RowsProblem& r) { return rows_csr(mask, r); }, fp64_attention<BlockMask>());
}

std::vector<float> naive_bf16_rows(const SpProblem& problem, const BlockMask& mask,
                                   const InputSource& source, int first_q_block, int end_q_block) {
  return rows_through<float>(
      problem, source, first_q_block, end_q_block, true,
      [&](const RowsProblem& r) { return rows_csr(mask, r); }, attention_block_sparse_bf16_naive);
}

std::vector<double> reference_rows(const SpProblem& problem, const FineMask& mask,
                                   const InputSource& source, int first_q_block, int end_q_block,
                                   bool round_inputs_to_bf16) {
  return rows_through<double>(
      problem, source, first_q_block, end_q_block, round_inputs_to_bf16,
      [&](const RowsProblem& r) { return rows_fine_mask(problem, mask, r); },
      fp64_attention<FineMask>());
}

std::vector<float> naive_bf16_rows(const SpProblem& problem, const FineMask& mask,
                                   const InputSource& source, int first_q_block, int end_q_block) {
  return rows_through<float>(
      problem, source, first_q_block, end_q_block, true,
      [&](const RowsProblem& r) { return rows_fine_mask(problem, mask, r); },
      attention_fine_bf16_naive);
}

std::vector<float> naive_bf16_rows(const SpProblem& problem, const FineMask& mask, uint64_t seed,
                                   int first_q_block, int end_q_block) {
  return naive_bf16_rows(problem, mask, InputSource{.seed = seed}, first_q_block, end_q_block);
}

std::vector<double> reference_rows(const SpProblem& problem, const FineMask& mask, uint64_t seed,
                                   int first_q_block, int end_q_block, bool round_inputs_to_bf16) {
  return reference_rows(problem, mask, InputSource{.seed = seed}, first_q_block, end_q_block,
                        round_inputs_to_bf16);
}

}  // namespace dbsp
