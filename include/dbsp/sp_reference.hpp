// What a sequence-parallel layer is checked against: inputs that every rank regenerates for any
// token from a seed (no communication needed to build shards or the reference), and the
// single-rank results for a range of query blocks over every key. `dbsp run --check` and the
// multi-rank tests share these, so that both compare against the same thing.
#pragma once

#include <cstdint>
#include <vector>

#include "dbsp/block_mask.hpp"
#include "dbsp/sp_attention.hpp"

namespace dbsp {

// Deterministic value in [-1, 1) of element (token, head, dim) of tensor `which` (0 Q, 1 K, 2 V).
float seeded_value(uint64_t seed, int which, int64_t token, int64_t head, int64_t dim);

// Tokens [first, end) of tensor `which`, laid out [tokens, heads, head_dim].
std::vector<float> seeded_tensor(uint64_t seed, int which, int64_t first, int64_t end, int heads,
                                 int head_dim);

// Output rows of query blocks [first_q_block, end_q_block), every head, [tokens, heads,
// head_dim], computed in fp64 from the seeded inputs (rounded to bf16 first when the path being
// checked sees bf16 inputs).
std::vector<double> reference_rows(const SpProblem& problem, const BlockMask& mask, uint64_t seed,
                                   int first_q_block, int end_q_block,
                                   bool round_inputs_to_bf16 = false);

// The same rows through the naive bf16 path (attention_block_sparse_bf16_naive) on bf16-rounded
// inputs: the yardstick of the bf16 accuracy rule (accuracy.hpp).
std::vector<float> naive_bf16_rows(const SpProblem& problem, const BlockMask& mask, uint64_t seed,
                                   int first_q_block, int end_q_block);

}  // namespace dbsp
