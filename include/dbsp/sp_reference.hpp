// What a sequence-parallel layer is checked against: inputs that every rank regenerates for any
// token from a seed, or Q and K from a synthetic workload (no communication needed to build
// shards or the reference), and the single-rank results for a range of query blocks over every
// key. `dbsp run --check` and the multi-rank tests share these, so that both compare against the
// same thing.
#pragma once

#include <cstdint>
#include <vector>

#include "dbsp/block_mask.hpp"
#include "dbsp/fine_mask.hpp"
#include "dbsp/sp_attention.hpp"
#include "dbsp/workload.hpp"

namespace dbsp {

// Deterministic value in [-1, 1) of element (token, head, dim) of tensor `which` (0 Q, 1 K, 2 V).
float seeded_value(uint64_t seed, int which, int64_t token, int64_t head, int64_t dim);

// Tokens [first, end) of tensor `which`, laid out [tokens, heads, head_dim].
std::vector<float> seeded_tensor(uint64_t seed, int which, int64_t first, int64_t end, int heads,
                                 int head_dim);

// Where a layer call's Q, K and V come from: the seed alone (seeded_tensor, uniform values whose
// estimated masks are nearly dense), or a synthetic workload's Q and K of (step, layer) with V
// seeded, whose estimated masks show the workload's head patterns (windows, stripes, sinks).
// Plain data; the workload is not owned and must outlive every use.
struct InputSource {
  uint64_t seed = 0;
  const SyntheticWorkload* workload = nullptr;  // null: Q, K and V all seeded
  int step = 0;
  int layer = 0;
};

// Throws unless `source` can feed `problem`: with a workload, the problem's heads, head_dim and
// query and key tokens must be the workload's (and step, layer within it).
void require_source_fits(const InputSource& source, const SpProblem& problem);

// Tokens [first, end) of tensor `which` (0 Q, 1 K, 2 V) from `source`, [tokens, heads, head_dim].
// Seed only: seeded_tensor. With a workload: Q or K of SyntheticWorkload::qk_tokens (heads,
// head_dim and the range must fit the workload), V seeded_tensor.
std::vector<float> source_tensor(const InputSource& source, int which, int64_t first, int64_t end,
                                 int heads, int head_dim);

// Output rows of query blocks [first_q_block, end_q_block), every head, [tokens, heads,
// head_dim], computed in fp64 from the source's inputs (rounded to bf16 first when the path being
// checked sees bf16 inputs).
std::vector<double> reference_rows(const SpProblem& problem, const BlockMask& mask,
                                   const InputSource& source, int first_q_block, int end_q_block,
                                   bool round_inputs_to_bf16 = false);
// The same on the seeded inputs (InputSource{seed}).
std::vector<double> reference_rows(const SpProblem& problem, const BlockMask& mask, uint64_t seed,
                                   int first_q_block, int end_q_block,
                                   bool round_inputs_to_bf16 = false);

// The same rows under a fine (FG-Attn) mask, whose geometry must be the problem's: fp64
// attention_fine over the kept keys of each (head, query block) on the source's inputs (rounded to
// bf16 first for the device path).
std::vector<double> reference_rows(const SpProblem& problem, const FineMask& mask,
                                   const InputSource& source, int first_q_block, int end_q_block,
                                   bool round_inputs_to_bf16 = false);
std::vector<double> reference_rows(const SpProblem& problem, const FineMask& mask, uint64_t seed,
                                   int first_q_block, int end_q_block,
                                   bool round_inputs_to_bf16 = false);

// The same rows through the naive bf16 path (attention_block_sparse_bf16_naive) on bf16-rounded
// inputs: the yardstick of the bf16 accuracy rule (accuracy.hpp).
std::vector<float> naive_bf16_rows(const SpProblem& problem, const BlockMask& mask,
                                   const InputSource& source, int first_q_block, int end_q_block);
std::vector<float> naive_bf16_rows(const SpProblem& problem, const BlockMask& mask, uint64_t seed,
                                   int first_q_block, int end_q_block);
// The same under a fine mask (attention_fine_bf16_naive over each row's kept keys).
std::vector<float> naive_bf16_rows(const SpProblem& problem, const FineMask& mask,
                                   const InputSource& source, int first_q_block, int end_q_block);
std::vector<float> naive_bf16_rows(const SpProblem& problem, const FineMask& mask, uint64_t seed,
                                   int first_q_block, int end_q_block);

}  // namespace dbsp
